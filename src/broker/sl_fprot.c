/* The broker's field protection: the protect stage's transforms, the policy's reload, the reveal
 * grants and the control-socket commands; see sl_fprot.h. Everything runs on the loop thread. */
#include "broker/sl_fprot.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "kms/sl_keysvc.h"
#include "pipeline/sl_req.h"
#include "protect/sl_fcrypt.h"
#include "protect/sl_fkeys.h"
#include "protect/sl_grants.h"
#include "protect/sl_policy.h"
#include "protect/sl_protect.h"
#include "proto/sl_batch.h"
#include "proto/sl_legacy.h"
#include "proto/sl_records.h"

/* Decompressed bytes a set may grow to while it is rewritten: the bound the legacy converter
 * already puts on a produce (a compression bomb costs no more here than there). */
#define MAX_INFLATE  SL_LEGACY_MAX_INFLATE
#define TICK_MS      1000 /* subject-key cache expiry */
#define KEY_WAIT_MS  100  /* a control command waiting for a key the key service is loading */
#define MAX_VERSIONS 1024

/* The policy file as last looked at: a change of any of these rereads it. */
typedef struct fsig {
    bool ok; /* stat succeeded */
    int64_t mtime_ns, size;
    ino_t ino;
    dev_t dev;
} fsig;

typedef enum { OP_CREATE, OP_ROTATE, OP_FORGET, OP_SUBJECTS } op_kind;

/* A control command answered later: a key-service operation (field-create, field-rotate) or a
 * forget waiting for a key being loaded. It outlives its connection (`c` NULL then) and, when
 * the key service still holds it at free, the module (`orphan`: the callback frees it). */
typedef struct fop {
    struct fop *next;
    sl_fprot *f;
    sl_ctl_conn *c;
    op_kind kind;
    uid_t uid;
    pid_t pid;
    bool in_keysvc, orphan;
    sl_timer *retry;
    int waits;
    /* field-create / field-rotate: the keys, one after the other */
    char (*names)[SL_FC_KEYNAME_MAX + 1];
    int nnames, at;
    /* forget: the clear id (cleansed at the end) and the token keys */
    uint8_t *subject;
    size_t nsubject;
    int destroyed;
} fop;

struct sl_fprot {
    sl_broker *b;
    sl_keysvc *ks;
    sl_fkeys *k;
    sl_policy *pol;
    char path[SL_CFG_STR_MAX];
    char grants_path[SL_CFG_STR_MAX + 64];
    fsig sig;
    bool last_failed; /* the last load failed: a field key created later may fix it */
    sl_grants grants;
    sl_xform_chain chain;
    sl_timer *reload_timer, *tick_timer, *announce_timer;
    bool subjects_pending; /* "_subjects" being created for a reloaded policy */
    fop *ops;
};

/* ---- counters ---- */

static sl_fprot_stats g_stats;

static void stat_add(uint64_t *c, int64_t n) {
    if (n > 0) __atomic_fetch_add(c, (uint64_t)n, __ATOMIC_RELAXED);
}

void sl_fprot_stats_get(sl_fprot_stats *out) {
    uint64_t *dst = (uint64_t *)out;
    const uint64_t *src = (const uint64_t *)&g_stats;
    for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* ---- events ---- */

static void emit(sl_fprot *f, const sl_req *rq, const char *principal, const sl_ev_protect *p) {
    sl_event ev = {.kind = SL_EV_PROTECT, .principal = principal, .protect = *p};
    if (rq) {
        ev.conn_id = rq->conn_id;
        ev.principal = rq->principal;
        ev.peer = rq->peer;
        ev.listener = rq->listener;
    }
    sl_events_emit(&f->b->events, &ev);
}

/* The actor of a control command, in the form sl_keyops uses for the same socket. */
static void ctl_actor(uid_t uid, pid_t pid, char *out, size_t n) {
    snprintf(out, n, "Local:uid=%u,pid=%d", (unsigned)uid, (int)pid);
}

/* ---- the policy ---- */

static bool key_ok(void *arg, const char *name) {
    return sl_fkeys_exists(((sl_fprot *)arg)->k, name);
}

static fsig file_sig(const char *path) {
    struct stat st;
    fsig s = {0};
    if (stat(path, &st) != 0) return s;
    s.ok = true;
    s.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    s.size = (int64_t)st.st_size;
    s.ino = st.st_ino;
    s.dev = st.st_dev;
    return s;
}

static bool sig_eq(const fsig *a, const fsig *b) {
    return a->ok == b->ok && a->mtime_ns == b->mtime_ns && a->size == b->size && a->ino == b->ino &&
           a->dev == b->dev;
}

static bool names_subject(const sl_policy *p) {
    for (int i = 0; p && i < p->ntopics; i++)
        if (p->topics[i].has_subject) return true;
    return false;
}

/* Asks the key service for every key the policy uses, so the first requests rarely find one
 * still being loaded (a remote KMS answers within its timeout; the requests retry meanwhile). */
static void preload(sl_fprot *f) {
    const char *names[256];
    int n = sl_policy_keys(f->pol, names, 256);
    for (int i = 0; i < n; i++) {
        const sl_fc_key *kc = NULL;
        (void)sl_fkeys_get(f->k, names[i], 0, NULL, false, &kc, NULL);
    }
}

static void op_free(fop *o);
static void op_unlink(fop *o);

static void subjects_made(void *ctx, sl_err e, const char *result) {
    fop *o = ctx;
    o->in_keysvc = false;
    if (o->orphan) { /* the module is gone */
        op_free(o);
        return;
    }
    o->f->subjects_pending = false;
    if (e)
        SL_ERROR("protect",
                 "cannot create the field key _subjects; subject keys fail until it exists",
                 "err=%s result=\"%s\"", sl_errname(e), result ? result : "");
    op_unlink(o);
    op_free(o);
}

/* A policy loaded while the broker runs names a subject for the first time: the "_subjects" key
 * is made by the key service's worker (the loop must not wait for the KMS). The op is what the
 * callback gets, so that it outlives the module if the key service still holds it at free. */
static void subjects_ensure_async(sl_fprot *f) {
    if (!f->ks || !names_subject(f->pol) || f->subjects_pending ||
        sl_fkeys_exists(f->k, SL_FKEYS_SUBJECTS))
        return;
    fop *o = calloc(1, sizeof *o);
    if (!o) return;
    o->f = f;
    o->kind = OP_SUBJECTS;
    o->next = f->ops;
    f->ops = o;
    uint8_t id[16];
    sl_fkeys_id(SL_FKEYS_SUBJECTS, id);
    f->subjects_pending = true;
    o->in_keysvc = true;
    sl_keysvc_op(f->ks, SL_KEYOP_TK_ROTATE, id, 0, "field protection policy names a subject",
                 subjects_made, o);
}

static void policy_event(sl_fprot *f, bool ok, const char *detail) {
    stat_add(&g_stats.reloads[ok ? 0 : 1], 1);
    emit(f, NULL, NULL,
         &(sl_ev_protect){
             .op = "policy", .partition = -1, .target = f->path, .success = ok, .detail = detail});
}

void sl_fprot_reload(sl_fprot *f, bool force) {
    if (!f || !f->path[0]) return;
    fsig now = file_sig(f->path);
    if (!force && sig_eq(&now, &f->sig)) return;
    /* Noted before parsing: a broken file is reported once, not at every check. */
    f->sig = now;
    sl_policy *np = NULL;
    char err[SL_CFG_STR_MAX + 512] = "";
    sl_err e = sl_policy_load(f->path, key_ok, f, &np, err, sizeof err);
    if (e) {
        if (!err[0]) snprintf(err, sizeof err, "%s: %s", f->path, sl_strerror(e));
        f->last_failed = true;
        SL_ERROR("protect", "policy not loaded; the previous one stays in force", "error=\"%s\"",
                 err);
        policy_event(f, false, err);
        return;
    }
    sl_policy_unref(f->pol);
    f->pol = np;
    f->last_failed = false;
    preload(f);
    subjects_ensure_async(f);
    SL_INFO("protect", "policy loaded", "file=%s digest=%s topics=%d", f->path, np->digest,
            np->ntopics);
    policy_event(f, true, NULL);
}

static void announce(void *ctx) {
    sl_fprot *f = ctx;
    f->announce_timer = NULL;
    policy_event(f, true, NULL);
}

static void reload_tick(void *ctx) {
    sl_fprot *f = ctx;
    f->reload_timer = NULL;
    sl_fprot_reload(f, false);
    f->reload_timer =
        sl_timer_start(f->b->loop, f->b->cfg.sluice_protect_reload_interval_ms, reload_tick, f);
}

static void keys_tick(void *ctx) {
    sl_fprot *f = ctx;
    f->tick_timer = NULL;
    sl_fkeys_tick(f->k, sl_mono_ms(), f->b->cfg.sluice_kms_cache_ttl_ms);
    f->tick_timer = sl_timer_start(f->b->loop, TICK_MS, keys_tick, f);
}

/* ---- the transforms (sl_xform.h slots) ---- */

static void topic_cstr(sl_str t, char out[256]) {
    int32_t n = t.len > 255 ? 255 : t.len < 0 ? 0 : t.len;
    if (n) memcpy(out, t.p, (size_t)n);
    out[n] = 0;
}

bool sl_fprot_covers(const sl_fprot *f, sl_str topic) {
    return f && f->pol && topic.len >= 0 &&
           sl_policy_topic(f->pol, topic.p, (size_t)topic.len) != NULL;
}

static int16_t protect_fn(void *arg, const sl_xform_ctx *c, uint8_t **data, size_t *len,
                          bool *rewritten) {
    sl_fprot *f = arg;
    const sl_ptopic *t = f->pol ? sl_policy_topic(f->pol, c->topic.p, (size_t)c->topic.len) : NULL;
    if (!t) return SL_KAFKA_NONE;
    sl_pcount cnt = {0};
    char why[256] = "";
    const uint8_t *in = *data;
    size_t inlen = *len;
    sl_err e =
        sl_protect_set(t, f->k, c->a, MAX_INFLATE, data, len, rewritten, &cnt, why, sizeof why);
    if (e == SL_EUNPROTECTABLE) {
        sl_batch_walk w; /* the set was validated before the transform ran */
        sl_batch_walk_set(in, inlen, &w);
        int64_t n = w.records;
        char topic[256];
        topic_cstr(c->topic, topic);
        if (!why[0]) snprintf(why, sizeof why, "a record cannot be protected");
        if (c->why && c->whylen) snprintf(c->why, c->whylen, "%s", why);
        stat_add(&g_stats.rejected, n);
        emit(f, c->rq, NULL,
             &(sl_ev_protect){.op = "reject",
                              .topic = topic,
                              .partition = c->partition,
                              .count = n,
                              .success = false,
                              .detail = why});
        return SL_KAFKA_INVALID_RECORD;
    }
    /* A key being loaded: retriable, the producer sends the batch again. */
    if (e == SL_EKEY_UNAVAILABLE || e == SL_EKMS_UNAVAILABLE) return SL_KAFKA_KAFKA_STORAGE_ERROR;
    if (e) {
        char topic[256];
        topic_cstr(c->topic, topic);
        SL_WARN("protect", "cannot protect a produce set", "topic=%s partition=%d err=%s", topic,
                (int)c->partition, sl_errname(e));
        return e == SL_ENOTFOUND || e == SL_EKEY_DESTROYED ? SL_KAFKA_KAFKA_STORAGE_ERROR
                                                           : sl_err_to_kafka(e);
    }
    stat_add(&g_stats.records[0], cnt.changed);
    stat_add(&g_stats.fields[0], cnt.fields);
    return SL_KAFKA_NONE;
}

static int16_t reveal_fn(void *arg, const sl_xform_ctx *c, uint8_t **data, size_t *len,
                         bool *rewritten) {
    sl_fprot *f = arg;
    const char *who = c->rq ? c->rq->principal : NULL;
    /* The common cases leave at once: the stored bytes go out without a copy. The topic's
     * block first (a hash lookup), then the principal's grants (a scan of the grant list). */
    if (!f->pol || !who) return SL_KAFKA_NONE;
    const sl_ptopic *t = sl_policy_topic(f->pol, c->topic.p, (size_t)c->topic.len);
    if (!t || t->nrules <= 0 || !sl_grants_any(&f->grants, who)) return SL_KAFKA_NONE;
    sl_view *views = sl_arena_calloc(c->a, (size_t)t->nrules, sizeof *views);
    sl_prule_count *rc = sl_arena_calloc(c->a, (size_t)t->nrules, sizeof *rc);
    if (!views || !rc) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    bool any = false;
    for (int i = 0; i < t->nrules; i++) {
        if (t->rules[i].action != SL_PA_ENCRYPT) continue;
        views[i] = sl_grants_view(&f->grants, who, c->topic.p, (size_t)c->topic.len,
                                  t->rules[i].target.text);
        any |= views[i] != SL_VIEW_STORED;
    }
    if (!any) return SL_KAFKA_NONE;
    sl_pcount cnt = {0};
    char topic[256];
    topic_cstr(c->topic, topic);
    sl_err e = sl_reveal_set(t, views, f->k, c->a, MAX_INFLATE, data, len, rewritten, &cnt, rc);
    /* Never ciphertext a consumer would commit past: it retries until the key is there. */
    if (e == SL_EKEY_UNAVAILABLE || e == SL_EKMS_UNAVAILABLE) return SL_KAFKA_KAFKA_STORAGE_ERROR;
    if (e == SL_ECORRUPT) {
        /* The batch that does not parse is served as stored: the client's own check decides. */
        SL_WARN("protect", "a stored batch does not parse; served as stored",
                "topic=%s partition=%d offset=%lld", topic, (int)c->partition,
                (long long)c->fetch_offset);
    } else if (e) {
        SL_WARN("protect", "cannot reveal a fetched set", "topic=%s partition=%d err=%s", topic,
                (int)c->partition, sl_errname(e));
        return sl_err_to_kafka(e);
    }
    stat_add(&g_stats.records[1], cnt.changed);
    stat_add(&g_stats.fields[1], cnt.fields);
    stat_add(&g_stats.reveal_failed, cnt.failed);
    for (int i = 0; i < t->nrules; i++) {
        if (!rc[i].shown && !rc[i].failed) continue;
        emit(f, c->rq, NULL,
             &(sl_ev_protect){.op = "reveal",
                              .topic = topic,
                              .partition = c->partition,
                              .field = t->rules[i].target.text,
                              .view = sl_view_name(views[i]),
                              .count = rc[i].shown,
                              .failed = rc[i].failed,
                              .success = true});
    }
    return SL_KAFKA_NONE;
}

/* ---- open / free ---- */

sl_err sl_fprot_open(sl_broker *b, sl_keysvc *ks, sl_fprot **out, char *err, size_t errlen) {
    *out = NULL;
    const sl_config *cfg = &b->cfg;
    /* Without a policy the module still serves its commands when there are keys, so field keys
     * and grants can be made before the first policy names them (a policy naming a missing key
     * is refused); it then puts nothing in the partitions' chain. */
    bool has_policy = cfg->sluice_protect_policy_file[0] != 0;
    if (!has_policy && !ks) return SL_OK;
    sl_fprot *f = calloc(1, sizeof *f);
    if (!f) return SL_ENOMEM;
    f->b = b;
    f->ks = ks;
    snprintf(f->path, sizeof f->path, "%s", cfg->sluice_protect_policy_file);
    if (cfg->sluice_protect_grants_file[0])
        snprintf(f->grants_path, sizeof f->grants_path, "%s", cfg->sluice_protect_grants_file);
    else
        snprintf(f->grants_path, sizeof f->grants_path, "%s/sluice-protect-grants", cfg->log_dirs);
    char why[512] = "";
    sl_err e = sl_fkeys_open_broker(cfg, ks, &f->k, why, sizeof why);
    if (e) {
        snprintf(err, errlen, "sluice.protect.subject.keys.file: %s",
                 why[0] ? why : sl_strerror(e));
        goto fail;
    }
    if ((e = sl_grants_load(f->grants_path, &f->grants, why, sizeof why))) {
        snprintf(err, errlen, "sluice.protect.grants.file: %s", why[0] ? why : sl_strerror(e));
        goto fail;
    }
    if (!has_policy) {
        if ((e = sl_policy_parse("", 0, "(no policy)", NULL, NULL, &f->pol, why, sizeof why)))
            goto fail;
        f->tick_timer = sl_timer_start(b->loop, TICK_MS, keys_tick, f);
        SL_INFO("protect", "field protection off (no sluice.protect.policy.file)",
                "grants=%d grants_file=%s", f->grants.n, f->grants_path);
        *out = f;
        return SL_OK;
    }
    f->sig = file_sig(f->path);
    if ((e = sl_policy_load(f->path, key_ok, f, &f->pol, why, sizeof why))) {
        snprintf(err, errlen, "sluice.protect.policy.file: %s", why[0] ? why : sl_strerror(e));
        goto fail;
    }
    if (ks && names_subject(f->pol) && !sl_fkeys_exists(f->k, SL_FKEYS_SUBJECTS)) {
        uint8_t id[16];
        sl_fkeys_id(SL_FKEYS_SUBJECTS, id);
        if ((e = sl_keysvc_topic_ensure_sync(ks, id, SL_FKEYS_SUBJECTS, why, sizeof why))) {
            snprintf(err, errlen, "field protection: cannot create the field key _subjects: %s",
                     why[0] ? why : sl_strerror(e));
            goto fail;
        }
    }
    preload(f);
    f->chain = (sl_xform_chain){.protect = {protect_fn, f}, .unprotect = {reveal_fn, f}};
    if (cfg->sluice_protect_reload_interval_ms > 0)
        f->reload_timer =
            sl_timer_start(b->loop, cfg->sluice_protect_reload_interval_ms, reload_tick, f);
    f->tick_timer = sl_timer_start(b->loop, TICK_MS, keys_tick, f);
    /* The open's "policy" event waits for the loop: the trail and metrics subscribe later. */
    f->announce_timer = sl_timer_start(b->loop, 0, announce, f);
    SL_INFO("protect", "field protection on",
            "policy=%s digest=%s topics=%d grants=%d grants_file=%s", f->path, f->pol->digest,
            f->pol->ntopics, f->grants.n, f->grants_path);
    *out = f;
    return SL_OK;
fail:
    sl_grants_free(&f->grants);
    sl_fkeys_close(f->k);
    free(f);
    return e;
}

static void op_free(fop *o) {
    if (o->subject) OPENSSL_cleanse(o->subject, o->nsubject);
    free(o->subject);
    free(o->names);
    free(o);
}

static void op_unlink(fop *o) {
    sl_fprot *f = o->f;
    for (fop **pp = &f->ops; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
}

void sl_fprot_free(sl_fprot *f) {
    if (!f) return;
    for (fop *o = f->ops, *nx; o; o = nx) {
        nx = o->next;
        if (o->retry) sl_timer_cancel(f->b->loop, o->retry);
        if (o->c) sl_ctl_finish(o->c, false, "the broker is stopping");
        if (o->in_keysvc)
            o->orphan = true; /* the key service's callback frees it */
        else
            op_free(o);
    }
    if (f->reload_timer) sl_timer_cancel(f->b->loop, f->reload_timer);
    if (f->tick_timer) sl_timer_cancel(f->b->loop, f->tick_timer);
    if (f->announce_timer) sl_timer_cancel(f->b->loop, f->announce_timer);
    sl_policy_unref(f->pol);
    sl_grants_free(&f->grants);
    sl_fkeys_close(f->k);
    free(f);
}

const sl_xform_chain *sl_fprot_chain(sl_fprot *f) { return f && f->path[0] ? &f->chain : NULL; }

/* ---- control-socket commands ---- */

static fop *op_new(sl_fprot *f, sl_ctl_conn *c, op_kind kind) {
    fop *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->f = f;
    o->c = c;
    o->kind = kind;
    sl_ctl_conn_peer(c, &o->uid, &o->pid);
    o->next = f->ops;
    f->ops = o;
    return o;
}

/* Ends a command: the final line if anyone still listens, then the op. */
static void op_end(fop *o, bool ok, const char *text) {
    if (o->retry) sl_timer_cancel(o->f->b->loop, o->retry);
    o->retry = NULL;
    if (o->c) sl_ctl_finish(o->c, ok, text);
    op_unlink(o);
    op_free(o);
}

void sl_fprot_ctl_gone(sl_fprot *f, sl_ctl_conn *c) {
    for (fop *o = f ? f->ops : NULL; o; o = o->next)
        if (o->c == c) o->c = NULL;
}

/* true when `e` is worth waiting out (a key the key service is loading) and the retry is set. */
static bool wait_key(fop *o, sl_err e, void (*fn)(void *)) {
    int64_t budget = o->f->b->cfg.sluice_kms_timeout_ms * 2 + 5000;
    if (e != SL_EKEY_UNAVAILABLE || (int64_t)o->waits * KEY_WAIT_MS >= budget) return false;
    o->waits++;
    o->retry = sl_timer_start(o->f->b->loop, KEY_WAIT_MS, fn, o);
    return o->retry != NULL;
}

static bool copy_word(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) return false;
    memcpy(dst, src, n + 1);
    return true;
}

static void cmd_grant(sl_fprot *f, sl_ctl_conn *c, const sl_ctl_req *req, const char *actor) {
    if (req->argc != 5) {
        sl_ctl_finish(c, false, "usage: protect-grant PRINCIPAL TOPIC FIELD VIEW");
        return;
    }
    sl_grant g = {0};
    if (!copy_word(g.principal, sizeof g.principal, req->argv[1]) ||
        !copy_word(g.topic, sizeof g.topic, req->argv[2]) ||
        !copy_word(g.field, sizeof g.field, req->argv[3])) {
        sl_ctl_finish(c, false, "a word of the grant is too long");
        return;
    }
    if (!sl_view_parse(req->argv[4], &g.view)) {
        sl_ctl_finish(c, false, "the view is one of reveal, mask, token");
        return;
    }
    const char *why = NULL;
    if (sl_grant_check(&g, &why)) {
        sl_ctl_finish(c, false, why ? why : "invalid grant");
        return;
    }
    /* The previous grant for the same principal, topic and field, to put back if saving fails. */
    const sl_grant *prev = sl_grants_find(&f->grants, g.principal, g.topic, g.field);
    bool had = prev != NULL;
    sl_grant old = had ? *prev : g; /* a copy: the put below may move the array */
    sl_err e = sl_grants_put(&f->grants, &g);
    if (!e && (e = sl_grants_save(f->grants_path, &f->grants))) {
        if (had)
            (void)sl_grants_put(&f->grants, &old);
        else
            (void)sl_grants_remove(&f->grants, g.principal, g.topic, g.field);
    }
    emit(f, NULL, actor,
         &(sl_ev_protect){.op = "grant",
                          .topic = g.topic,
                          .partition = -1,
                          .field = g.field,
                          .view = sl_view_name(g.view),
                          .target = g.principal,
                          .success = e == SL_OK,
                          .detail = e ? sl_strerror(e) : NULL});
    if (e) {
        char line[sizeof f->grants_path + 128];
        snprintf(line, sizeof line, "grant not saved (%s): %s", f->grants_path, sl_strerror(e));
        sl_ctl_finish(c, false, line);
        return;
    }
    SL_INFO("protect", "grant added", "principal=%s topic=%s field=%s view=%s by=%s", g.principal,
            g.topic, g.field, sl_view_name(g.view), actor);
    sl_ctl_finish(c, true, had ? "grant replaced" : "grant added");
}

static void cmd_revoke(sl_fprot *f, sl_ctl_conn *c, const sl_ctl_req *req, const char *actor) {
    if (req->argc != 4) {
        sl_ctl_finish(c, false, "usage: protect-revoke PRINCIPAL TOPIC FIELD");
        return;
    }
    const char *p = req->argv[1], *t = req->argv[2], *fld = req->argv[3];
    const sl_grant *prev = sl_grants_find(&f->grants, p, t, fld);
    if (!prev) {
        sl_ctl_finish(c, false, "no such grant");
        return;
    }
    sl_grant old = *prev; /* a copy: the remove below overwrites it */
    (void)sl_grants_remove(&f->grants, p, t, fld);
    sl_err e = sl_grants_save(f->grants_path, &f->grants);
    if (e) (void)sl_grants_put(&f->grants, &old);
    emit(f, NULL, actor,
         &(sl_ev_protect){.op = "revoke",
                          .topic = old.topic,
                          .partition = -1,
                          .field = old.field,
                          .view = sl_view_name(old.view),
                          .target = old.principal,
                          .success = e == SL_OK,
                          .detail = e ? sl_strerror(e) : NULL});
    if (e) {
        char line[sizeof f->grants_path + 128];
        snprintf(line, sizeof line, "revocation not saved (%s): %s", f->grants_path,
                 sl_strerror(e));
        sl_ctl_finish(c, false, line);
        return;
    }
    SL_INFO("protect", "grant revoked", "principal=%s topic=%s field=%s by=%s", old.principal,
            old.topic, old.field, actor);
    sl_ctl_finish(c, true, "grant revoked");
}

static void json_str(sl_text *t, const char *s) {
    sl_text_put(t, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            sl_text_printf(t, "\\%c", ch);
        else if (ch < 0x20)
            sl_text_printf(t, "\\u%04x", ch);
        else
            sl_text_put(t, s, 1);
    }
    sl_text_put(t, "\"", 1);
}

static void answer_json(sl_ctl_conn *c, sl_text *t, const char *ok) {
    if (t->oom) {
        sl_text_free(t);
        sl_ctl_finish(c, false, "out of memory");
        return;
    }
    sl_ctl_send(c, "json", t->p ? t->p : "null");
    sl_text_free(t);
    sl_ctl_finish(c, true, ok);
}

static void cmd_status(sl_fprot *f, sl_ctl_conn *c) {
    sl_text t = {0};
    sl_text_puts(&t, "{\"policy\":");
    json_str(&t, f->path);
    sl_text_puts(&t, ",\"digest\":");
    json_str(&t, f->pol->digest);
    int subjects = 0;
    for (int i = 0; i < f->pol->ntopics; i++) subjects += f->pol->topics[i].has_subject;
    sl_text_printf(&t,
                   ",\"topics\":%d,\"subject_rules\":%d,\"subjects\":%" PRId64
                   ",\"grants\":%d,\"last_load_failed\":%s,\"grants_file\":",
                   f->pol->ntopics, subjects, sl_fkeys_subjects(f->k), f->grants.n,
                   f->last_failed ? "true" : "false");
    json_str(&t, f->grants_path);
    sl_text_puts(&t, ",\"topic_patterns\":[");
    for (int i = 0; i < f->pol->ntopics; i++) {
        char pat[260];
        snprintf(pat, sizeof pat, "%s%s", f->pol->topics[i].pattern,
                 f->pol->topics[i].prefix ? "*" : "");
        if (i) sl_text_put(&t, ",", 1);
        json_str(&t, pat);
    }
    sl_text_puts(&t, "]}");
    answer_json(c, &t, "status");
}

/* -- field-create / field-rotate: one key-service operation per key, one after the other -- */

static void keys_step(fop *o);

static void key_done(void *ctx, sl_err e, const char *result) {
    fop *o = ctx;
    o->in_keysvc = false;
    if (o->orphan) {
        op_free(o);
        return;
    }
    const char *name = o->names[o->at];
    if (e) {
        char line[256];
        snprintf(line, sizeof line, "field key %s: %s", name,
                 result && result[0] ? result : sl_strerror(e));
        op_end(o, false, line);
        return;
    }
    uint32_t vs[MAX_VERSIONS];
    int nv = sl_fkeys_versions(o->f->k, name, vs, MAX_VERSIONS);
    if (o->c)
        sl_ctl_sendf(o->c, "info", "field key %s: version %" PRIu32, name, nv > 0 ? vs[nv - 1] : 0);
    SL_INFO("protect", o->kind == OP_CREATE ? "field key created" : "field key rotated",
            "name=%s version=%" PRIu32 " uid=%u pid=%d", name, nv > 0 ? vs[nv - 1] : 0,
            (unsigned)o->uid, (int)o->pid);
    o->at++;
    keys_step(o);
}

static void keys_step(fop *o) {
    sl_fprot *f = o->f;
    if (o->at >= o->nnames) {
        char line[96];
        snprintf(line, sizeof line,
                 o->kind == OP_CREATE ? "field key created" : "%d field key%s rotated", o->nnames,
                 o->nnames == 1 ? "" : "s");
        bool retry = o->kind == OP_CREATE && f->last_failed;
        op_end(o, true, line);
        /* A policy refused for naming this key loads now. */
        if (retry) sl_fprot_reload(f, true);
        return;
    }
    if (!o->c) { /* no one waits for the rest */
        op_end(o, false, "interrupted");
        return;
    }
    uint8_t id[16];
    sl_fkeys_id(o->names[o->at], id);
    o->in_keysvc = true;
    sl_keysvc_op(f->ks, SL_KEYOP_TK_ROTATE, id, 0,
                 o->kind == OP_CREATE ? "sluice keys create --field"
                                      : "sluice keys rotate --fields",
                 key_done, o);
}

static void cmd_field_keys(sl_fprot *f, sl_ctl_conn *c, const sl_ctl_req *req, bool create) {
    if ((create && req->argc != 2) || (!create && req->argc > 2)) {
        sl_ctl_finish(c, false, create ? "usage: field-create NAME" : "usage: field-rotate [NAME]");
        return;
    }
    if (!f->ks) {
        sl_ctl_finish(c, false,
                      "encryption at rest is off (sluice.encryption.enable): field keys live in "
                      "the key service");
        return;
    }
    const char *one = req->argc == 2 ? req->argv[1] : NULL;
    if (one && !sl_fc_keyname_ok(one, strlen(one))) {
        sl_ctl_finish(c, false, "invalid field key name");
        return;
    }
    if (one && create && sl_fkeys_exists(f->k, one)) {
        sl_ctl_finish(c, false, "that field key exists (rotate it to get a new version)");
        return;
    }
    if (one && !create && !sl_fkeys_exists(f->k, one)) {
        sl_ctl_finish(c, false, "no such field key");
        return;
    }
    const char *names[256];
    int n = 0;
    if (one)
        names[n++] = one;
    else
        n = sl_policy_keys(f->pol, names, 256);
    if (!n) {
        sl_ctl_finish(c, true, "the policy uses no field key: nothing to rotate");
        return;
    }
    fop *o = op_new(f, c, create ? OP_CREATE : OP_ROTATE);
    if (o) o->names = calloc((size_t)n, sizeof *o->names);
    if (!o || !o->names) {
        if (o)
            op_end(o, false, "out of memory");
        else
            sl_ctl_finish(c, false, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) snprintf(o->names[i], sizeof o->names[i], "%s", names[i]);
    o->nnames = n;
    keys_step(o);
}

/* -- forget -- */

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static void forget_run(void *ctx);

/* Forgets the subject under every version of each token key in o->names; idempotent, so a wait
 * for a key being loaded simply runs it again. */
static void forget_run(void *ctx) {
    fop *o = ctx;
    sl_fprot *f = o->f;
    o->retry = NULL;
    if (!o->c) {
        op_end(o, false, "interrupted");
        return;
    }
    char token[SL_FC_TOKEN_STR_MAX];
    for (int i = 0; i < o->nnames; i++) {
        const char *key = o->names[i];
        uint32_t vs[MAX_VERSIONS];
        int nv = sl_fkeys_versions(f->k, key, vs, MAX_VERSIONS);
        if (nv <= 0) {
            sl_ctl_sendf(o->c, "info", "token key %s: no versions (not created, or shredded)", key);
            continue;
        }
        for (int j = 0; j < nv; j++) {
            uint8_t id[16];
            sl_err e = sl_protect_subject_id(f->k, key, vs[j], o->subject, o->nsubject, id);
            if (!e) {
                bool found = false;
                e = sl_fkeys_forget(f->k, id, &found);
                o->destroyed += found;
            }
            OPENSSL_cleanse(id, sizeof id);
            if (e && wait_key(o, e, forget_run)) return;
            if (e) {
                char line[256];
                snprintf(line, sizeof line, "token key %s version %" PRIu32 ": %s", key, vs[j],
                         sl_strerror(e));
                op_end(o, false, line);
                return;
            }
        }
        /* The trail names the subject by its current token, never by the clear id. */
        const sl_fc_key *kc = NULL;
        token[0] = 0;
        if (sl_fkeys_get(f->k, key, 0, NULL, false, &kc, NULL) == SL_OK && kc)
            (void)sl_fc_token(kc, o->subject, o->nsubject, token);
        char actor[64];
        ctl_actor(o->uid, o->pid, actor, sizeof actor);
        emit(f, NULL, actor,
             &(sl_ev_protect){.op = "forget",
                              .partition = -1,
                              .target = token[0] ? token : NULL,
                              .count = o->destroyed,
                              .success = true});
    }
    char line[96];
    snprintf(line, sizeof line, "forgot the subject: %d subject key%s destroyed", o->destroyed,
             o->destroyed == 1 ? "" : "s");
    SL_INFO("protect", "subject forgotten", "keys_destroyed=%d uid=%u pid=%d", o->destroyed,
            (unsigned)o->uid, (int)o->pid);
    op_end(o, true, line);
}

static void cmd_forget(sl_fprot *f, sl_ctl_conn *c, const sl_ctl_req *req) {
    if (req->argc < 2 || req->argc > 3) {
        sl_ctl_finish(c, false, "usage: forget HEX [KEY]");
        return;
    }
    const char *hex = req->argv[1];
    size_t hl = strlen(hex);
    if (hl == 0 || hl % 2) {
        sl_ctl_finish(c, false, "the subject id is hex-encoded bytes");
        return;
    }
    const char *one = req->argc == 3 ? req->argv[2] : NULL;
    if (one && !sl_fc_keyname_ok(one, strlen(one))) {
        sl_ctl_finish(c, false, "invalid token key name");
        return;
    }
    const char *names[SL_POLICY_MAX_TOPICS];
    int n = 0;
    if (one) {
        names[n++] = one;
    } else {
        for (int i = 0; i < f->pol->ntopics; i++) {
            const sl_ptopic *t = &f->pol->topics[i];
            bool seen = false;
            for (int j = 0; t->has_subject && j < n && !seen; j++)
                seen = !strcmp(names[j], t->subject_key);
            if (t->has_subject && !seen) names[n++] = t->subject_key;
        }
    }
    if (!n) {
        sl_ctl_finish(c, false, "the policy names no subject (give the token key)");
        return;
    }
    fop *o = op_new(f, c, OP_FORGET);
    if (o) {
        o->names = calloc((size_t)n, sizeof *o->names);
        o->subject = malloc(hl / 2);
    }
    if (!o || !o->names || !o->subject) {
        if (o)
            op_end(o, false, "out of memory");
        else
            sl_ctl_finish(c, false, "out of memory");
        return;
    }
    for (size_t i = 0; i < hl / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            op_end(o, false, "the subject id is hex-encoded bytes");
            return;
        }
        o->subject[i] = (uint8_t)(hi << 4 | lo);
    }
    o->nsubject = hl / 2;
    for (int i = 0; i < n; i++) snprintf(o->names[i], sizeof o->names[i], "%s", names[i]);
    o->nnames = n;
    forget_run(o);
}

static void cmd_forget_token(sl_fprot *f, sl_ctl_conn *c, const sl_ctl_req *req,
                             const char *actor) {
    if (req->argc != 2) {
        sl_ctl_finish(c, false, "usage: forget-token TOKEN");
        return;
    }
    const char *tok = req->argv[1];
    size_t n = strlen(tok);
    /* "tok1.KEY.VER.MAC": the subject id is the MAC. */
    const char *mac = strrchr(tok, '.');
    uint8_t id[SL_FC_TOKEN_MAC + 4];
    if (!sl_fc_is_token(tok, n) || !mac ||
        sl_fc_b64url_decode(mac + 1, strlen(mac + 1), id, sizeof id) != SL_FC_TOKEN_MAC) {
        sl_ctl_finish(c, false, "not a token string (tok1.KEY.VERSION.MAC)");
        return;
    }
    bool found = false;
    sl_err e = sl_fkeys_forget(f->k, id, &found);
    OPENSSL_cleanse(id, sizeof id);
    emit(f, NULL, actor,
         &(sl_ev_protect){.op = "forget",
                          .partition = -1,
                          .target = tok,
                          .count = found ? 1 : 0,
                          .success = e == SL_OK,
                          .detail = e ? sl_strerror(e) : NULL});
    if (e) {
        sl_ctl_finish(c, false, sl_strerror(e));
        return;
    }
    SL_INFO("protect", "subject forgotten", "token=%s keys_destroyed=%d by=%s", tok, found ? 1 : 0,
            actor);
    sl_ctl_finish(c, true,
                  found ? "forgot the subject: 1 subject key destroyed"
                        : "forgot the subject: 0 subject keys destroyed (none was held)");
}

bool sl_fprot_ctl(sl_fprot *f, sl_broker *b, sl_keysvc *ks, sl_ctl_conn *c, const sl_ctl_req *req) {
    (void)b;
    (void)ks; /* the ones given at open */
    static const char *const cmds[] = {"protect-grant",  "protect-revoke", "protect-list",
                                       "protect-status", "field-create",   "field-rotate",
                                       "forget",         "forget-token"};
    const char *cmd = req->argc > 0 ? req->argv[0] : "";
    int which = -1;
    for (int i = 0; i < (int)(sizeof cmds / sizeof *cmds) && which < 0; i++)
        if (!strcmp(cmd, cmds[i])) which = i;
    if (which < 0) return false;
    if (!f) {
        sl_ctl_finish(c, false, "field protection is off");
        return true;
    }
    if (f->b->stopping) {
        sl_ctl_finish(c, false, "the broker is stopping");
        return true;
    }
    uid_t uid;
    pid_t pid;
    sl_ctl_conn_peer(c, &uid, &pid);
    char actor[64];
    ctl_actor(uid, pid, actor, sizeof actor);
    switch (which) {
    case 0:
        cmd_grant(f, c, req, actor);
        break;
    case 1:
        cmd_revoke(f, c, req, actor);
        break;
    case 2: {
        if (req->argc != 1) {
            sl_ctl_finish(c, false, "usage: protect-list");
            break;
        }
        sl_text t = {0};
        sl_grants_json(&f->grants, &t);
        answer_json(c, &t, "grants");
        break;
    }
    case 3:
        if (req->argc != 1)
            sl_ctl_finish(c, false, "usage: protect-status");
        else
            cmd_status(f, c);
        break;
    case 4:
    case 5:
        cmd_field_keys(f, c, req, which == 4);
        break;
    case 6:
        cmd_forget(f, c, req);
        break;
    default:
        cmd_forget_token(f, c, req, actor);
        break;
    }
    return true;
}
