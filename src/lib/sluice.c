/* libsluice (include/sluice.h): the engine of src/protect behind a stable C API. Every call
 * works in a fresh arena and hands back malloc'd copies, so nothing the caller holds points
 * into the library's memory and a handle keeps no per-record state. Keys are opened in direct
 * mode (sl_fkeys_open_direct): the library reads the broker's keyring and calls its KMS
 * provider itself, and sees every encrypted field in clear (its holder has the keys). */
#include "sluice.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base/sl_arena.h"
#include "base/sl_config.h"
#include "base/sl_err.h"
#include "base/sl_time.h"
#include "protect/sl_fkeys.h"
#include "protect/sl_grants.h"
#include "protect/sl_policy.h"
#include "protect/sl_protect.h"

#define LIB_VERSION "0.1.0"

struct sluice_protector {
    sl_policy *pol;
    sl_fkeys *keys;       /* NULL: no properties given, keyless rules only */
    int64_t cache_ttl_ms; /* sluice.kms.cache.ttl.ms: how long unused key contexts stay */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The one place internal errors meet the API's codes. */
static int map_err(sl_err e) {
    switch (e) {
    case SL_OK:
        return SLUICE_OK;
    case SL_ENOMEM:
        return SLUICE_ENOMEM;
    case SL_EIO:
    case SL_ENOSPC:
        return SLUICE_EIO;
    case SL_EUNPROTECTABLE:
        return SLUICE_EUNPROTECTABLE;
    case SL_ENOTFOUND:
    case SL_ETAMPER:
    case SL_EKEY_UNAVAILABLE:
    case SL_EKEY_DESTROYED:
    case SL_EKMS_UNAVAILABLE:
    case SL_EKMS_DENIED:
        return SLUICE_EKEY;
    case SL_ECONFIG:
    case SL_ECORRUPT:
        return SLUICE_ECONFIG;
    default:
        return SLUICE_EINVAL;
    }
}

/* The policy's KEY names must exist; without properties there are no keys at all, so a keyed
 * rule fails the load with the line that names it rather than the first record. */
static bool key_ok(void *arg, const char *name) {
    sl_fkeys *k = arg;
    return k && sl_fkeys_exists(k, name);
}

int sluice_open(const char *properties, const char *policy, sluice_protector **out, char *err,
                size_t errlen) {
    set_err(err, errlen, "%s", "");
    if (!out || !policy) {
        set_err(err, errlen, "sluice_open: policy and out are required");
        return SLUICE_EINVAL;
    }
    *out = NULL;
    sluice_protector *p = calloc(1, sizeof *p);
    /* sl_config holds a hundred path-sized strings: too big for a caller's stack. */
    sl_config *cfg = calloc(1, sizeof *cfg);
    char msg[1024] = "";
    int rc = SLUICE_ENOMEM;
    if (!p || !cfg) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    sl_config_defaults(cfg);
    p->cache_ttl_ms = cfg->sluice_kms_cache_ttl_ms;
    if (properties) {
        sl_err e = sl_config_load(cfg, properties, msg, sizeof msg);
        if (!e) e = sl_config_finish(cfg, msg, sizeof msg);
        if (e) {
            set_err(err, errlen, "%s", msg);
            rc = e == SL_ENOMEM ? SLUICE_ENOMEM : SLUICE_ECONFIG;
            goto fail;
        }
        p->cache_ttl_ms = cfg->sluice_kms_cache_ttl_ms;
        e = sl_fkeys_open_direct(cfg, &p->keys, msg, sizeof msg);
        if (e) {
            set_err(err, errlen, "keys: %s", msg[0] ? msg : sl_strerror(e));
            rc = map_err(e);
            goto fail;
        }
    }
    sl_err e = sl_policy_load(policy, key_ok, p->keys, &p->pol, msg, sizeof msg);
    if (e) {
        set_err(err, errlen, "%s", msg[0] ? msg : sl_strerror(e));
        rc = e == SL_ENOMEM ? SLUICE_ENOMEM : e == SL_EIO ? SLUICE_EIO : SLUICE_ECONFIG;
        goto fail;
    }
    OPENSSL_cleanse(cfg, sizeof *cfg); /* ssl.key.password and the like, if the file had them */
    free(cfg);
    *out = p;
    return SLUICE_OK;
fail:
    if (p) sl_fkeys_close(p->keys);
    free(p);
    if (cfg) OPENSSL_cleanse(cfg, sizeof *cfg);
    free(cfg);
    return rc;
}

void sluice_close(sluice_protector *p) {
    if (!p) return;
    sl_fkeys_close(p->keys);
    sl_policy_unref(p->pol);
    free(p);
}

/* ---- records in and out ---- */

static bool len_ok(const void *ptr, size_t n) { return n <= INT32_MAX && (ptr || n == 0); }

/* The caller's record as the engine's (borrowed bytes, a header array in the arena). */
static int prec_in(sl_arena *a, const sluice_record *in, sl_prec *rec, char *err, size_t errlen) {
    if ((in->key && in->key_len > INT32_MAX) || (in->value && in->value_len > INT32_MAX) ||
        in->nheaders > INT32_MAX || (in->nheaders && !in->headers)) {
        set_err(err, errlen, "record too large or malformed");
        return SLUICE_EINVAL;
    }
    rec->key = in->key ? (sl_bytes){in->key, (int32_t)in->key_len} : SL_BYTES_NULL;
    rec->value = in->value ? (sl_bytes){in->value, (int32_t)in->value_len} : SL_BYTES_NULL;
    rec->nheaders = (int32_t)in->nheaders;
    rec->headers = NULL;
    if (!in->nheaders) return SLUICE_OK;
    rec->headers = sl_arena_calloc(a, in->nheaders, sizeof *rec->headers);
    if (!rec->headers) {
        set_err(err, errlen, "out of memory");
        return SLUICE_ENOMEM;
    }
    for (size_t i = 0; i < in->nheaders; i++) {
        const sluice_header *h = &in->headers[i];
        if (!len_ok(h->key, h->key_len) || (h->value && h->value_len > INT32_MAX)) {
            set_err(err, errlen, "header %zu too large or malformed", i);
            return SLUICE_EINVAL;
        }
        rec->headers[i].key =
            (sl_bytes){(const uint8_t *)(h->key ? h->key : ""), (int32_t)h->key_len};
        rec->headers[i].value =
            h->value ? (sl_bytes){h->value, (int32_t)h->value_len} : SL_BYTES_NULL;
    }
    return SLUICE_OK;
}

/* A malloc'd copy of b (one spare byte so an empty value is a non-NULL pointer), NULL for null
 * (*ok false when out of memory). */
static void *dup_bytes(sl_bytes b, bool *ok) {
    if (b.len < 0) return NULL;
    uint8_t *p = malloc((size_t)b.len + 1);
    if (!p) {
        *ok = false;
        return NULL;
    }
    if (b.len) memcpy(p, b.p, (size_t)b.len);
    p[b.len] = 0;
    return p;
}

/* Copies the engine's result out: key and value each malloc'd, the header array and all its
 * bytes in one block (r->headers), as sluice_record_free expects. */
static int prec_out(const sl_prec *rec, sluice_record *out, char *err, size_t errlen) {
    bool ok = true;
    out->key = dup_bytes(rec->key, &ok);
    out->key_len = rec->key.len < 0 ? 0 : (size_t)rec->key.len;
    out->value = dup_bytes(rec->value, &ok);
    out->value_len = rec->value.len < 0 ? 0 : (size_t)rec->value.len;
    if (ok && rec->nheaders > 0) {
        size_t n = (size_t)rec->nheaders, total = n * sizeof(sluice_header);
        for (size_t i = 0; i < n; i++) {
            total += (size_t)rec->headers[i].key.len + 1;
            if (rec->headers[i].value.len >= 0) total += (size_t)rec->headers[i].value.len + 1;
        }
        sluice_header *hs = malloc(total);
        if (!hs) {
            ok = false;
        } else {
            char *bytes = (char *)(hs + n);
            for (size_t i = 0; i < n; i++) {
                const sl_rec_header *h = &rec->headers[i];
                size_t kl = h->key.len < 0 ? 0 : (size_t)h->key.len;
                if (kl) memcpy(bytes, h->key.p, kl);
                bytes[kl] = 0;
                hs[i].key = bytes;
                hs[i].key_len = kl;
                bytes += kl + 1;
                if (h->value.len < 0) {
                    hs[i].value = NULL;
                    hs[i].value_len = 0;
                    continue;
                }
                if (h->value.len) memcpy(bytes, h->value.p, (size_t)h->value.len);
                bytes[h->value.len] = 0;
                hs[i].value = bytes;
                hs[i].value_len = (size_t)h->value.len;
                bytes += (size_t)h->value.len + 1;
            }
            out->headers = hs;
            out->nheaders = n;
        }
    }
    if (!ok) {
        sluice_record_free(out);
        set_err(err, errlen, "out of memory");
        return SLUICE_ENOMEM;
    }
    return SLUICE_OK;
}

static bool has_encrypt(const sl_ptopic *t) {
    for (int i = 0; i < t->nrules; i++)
        if (t->rules[i].action == SL_PA_ENCRYPT) return true;
    return false;
}

/* One record through protect (or reveal) in its own arena. */
static int run(sluice_protector *p, bool reveal, const char *topic, const sluice_record *in,
               sluice_record *out, char *err, size_t errlen) {
    set_err(err, errlen, "%s", "");
    if (out) memset(out, 0, sizeof *out);
    if (!p || !topic || !in || !out) {
        set_err(err, errlen, "protector, topic, record and out are required");
        return SLUICE_EINVAL;
    }
    /* Key contexts handed out by the previous call are borrowed until this tick. */
    if (p->keys) sl_fkeys_tick(p->keys, sl_mono_ms(), p->cache_ttl_ms);
    sl_arena *a = sl_arena_new(16 * 1024);
    if (!a) {
        set_err(err, errlen, "out of memory");
        return SLUICE_ENOMEM;
    }
    sl_prec rec;
    int rc = prec_in(a, in, &rec, err, errlen);
    const sl_ptopic *t = sl_policy_topic(p->pol, topic, strlen(topic));
    sl_err e = SL_OK;
    if (rc == SLUICE_OK && t && t->needs_keys && !p->keys) {
        /* The policy loaded only because no keyed rule was in it; kept as a guard. */
        set_err(err, errlen, "topic %s needs field keys: open with a properties file", topic);
        rc = SLUICE_EKEY;
    } else if (rc == SLUICE_OK && t && !reveal) {
        sl_pcount cnt = {0};
        char why[256] = "";
        e = sl_protect_record(t, p->keys, a, &rec, &cnt, why, sizeof why);
        if (!e && cnt.subjects > 0) e = sl_fkeys_sync(p->keys);
        if (e == SL_EUNPROTECTABLE)
            set_err(err, errlen, "%s", why[0] ? why : sl_strerror(e));
        else if (e)
            set_err(err, errlen, "protect: %s", sl_strerror(e));
    } else if (rc == SLUICE_OK && t && has_encrypt(t)) {
        sl_view *views = sl_arena_calloc(a, (size_t)t->nrules, sizeof *views);
        if (!views) {
            e = SL_ENOMEM;
        } else {
            for (int i = 0; i < t->nrules; i++)
                views[i] = t->rules[i].action == SL_PA_ENCRYPT ? SL_VIEW_REVEAL : SL_VIEW_STORED;
            sl_pcount cnt = {0};
            e = sl_reveal_record(t, views, p->keys, a, &rec, &cnt, NULL);
        }
        if (e) set_err(err, errlen, "reveal: %s", sl_strerror(e));
    }
    if (rc == SLUICE_OK && e) rc = map_err(e);
    if (rc == SLUICE_OK) rc = prec_out(&rec, out, err, errlen);
    sl_arena_free(a);
    return rc;
}

int sluice_protect(sluice_protector *p, const char *topic, const sluice_record *in,
                   sluice_record *out, char *err, size_t errlen) {
    return run(p, false, topic, in, out, err, errlen);
}

int sluice_reveal(sluice_protector *p, const char *topic, const sluice_record *in,
                  sluice_record *out, char *err, size_t errlen) {
    return run(p, true, topic, in, out, err, errlen);
}

static int run_value(sluice_protector *p, bool reveal, const char *topic, const void *value,
                     size_t len, void **out, size_t *out_len, char *err, size_t errlen) {
    if (!out || !out_len || (!value && len)) {
        set_err(err, errlen, "value, out and out_len are required");
        return SLUICE_EINVAL;
    }
    *out = NULL;
    *out_len = 0;
    /* An empty value is "" rather than null: a caller with bytes means bytes. */
    sluice_record in = {.value = value ? value : "", .value_len = len}, r;
    int rc = run(p, reveal, topic, &in, &r, err, errlen);
    if (rc) return rc;
    /* A redacted whole value comes back null: as a value-only call, an empty buffer. */
    *out = (void *)r.value;
    *out_len = r.value_len;
    if (!*out && !(*out = calloc(1, 1))) rc = SLUICE_ENOMEM;
    r.value = NULL;
    sluice_record_free(&r);
    if (rc) set_err(err, errlen, "out of memory");
    return rc;
}

int sluice_protect_value(sluice_protector *p, const char *topic, const void *value, size_t len,
                         void **out, size_t *out_len, char *err, size_t errlen) {
    return run_value(p, false, topic, value, len, out, out_len, err, errlen);
}

int sluice_reveal_value(sluice_protector *p, const char *topic, const void *value, size_t len,
                        void **out, size_t *out_len, char *err, size_t errlen) {
    return run_value(p, true, topic, value, len, out, out_len, err, errlen);
}

void sluice_record_free(sluice_record *r) {
    if (!r) return;
    free((void *)r->key);
    free((void *)r->value);
    free(r->headers); /* one block with every header's bytes */
    memset(r, 0, sizeof *r);
}

void sluice_free(void *p) { free(p); }

const char *sluice_version(void) { return LIB_VERSION; }
