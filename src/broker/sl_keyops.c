#include "broker/sl_keyops.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/sl_logging.h"
#include "base/sl_text.h"
#include "broker/sl_broker.h"
#include "broker/sl_fprot.h"
#include "ctl/sl_ctl.h"
#include "gateway/sl_gateway.h"
#include "gateway/sl_gwcrypt.h"
#include "kms/sl_keysvc.h"

/* One lifecycle command in progress. It outlives its connection when the peer leaves while the
 * key service or the worker still has it (`c` NULL then), and outlives the module when the key
 * service still holds it at free (`orphan`): the key service's callback frees it. */
typedef struct op {
    sl_keyops *k;
    sl_ctl_conn *c;
    char cmd[16];
    char resource[SL_TOPIC_NAME_MAX + 16];
    uid_t uid;
    pid_t pid;
    bool in_keysvc;
    bool orphan;
    /* reencrypt */
    sl_topic **tps;
    int ntp, ti;
    int32_t pi;
    uint32_t tkv; /* the current topic's target topic-key version (0: not looked up yet) */
    bool new_tk;  /* rotate each topic's key before rewriting its segments */
    int rotated;  /* 1 + index of the topic whose key was rotated last */
    int done, total;
    sl_log_reenc *job; /* with the worker */
    sl_timer *retry;   /* waiting for a key the key service is loading */
    int waits;         /* consecutive waits for keys */
    int skipped;       /* partitions not open (unavailable), hence not re-encrypted */
} op;

struct sl_keyops {
    sl_broker *b;
    sl_keysvc *ks;
    sl_ctl *ctl;
    sl_fprot *fprot; /* field protection's commands go there (NULL: off) */
    op *busy;        /* the lifecycle command running, if any */
    /* the re-encryption worker: one job slot */
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int efd;
    sl_log_reenc *w_job; /* handed to the worker */
    bool w_done;         /* w_job ran: its result is w_result */
    sl_err w_result;
    bool w_stop;
};

/* ---- audit ---- */

/* The actor of a control command: the operating-system user behind the socket (SO_PEERCRED),
 * in the principal's "Type:name" form the audit trail splits. Not a network peer: no address. */
static void peer_name(uid_t uid, pid_t pid, char *out, size_t n) {
    snprintf(out, n, "Local:uid=%u,pid=%d", (unsigned)uid, (int)pid);
}

static void audit(sl_keyops *k, const op *o, bool ok, const char *detail) {
    char action[32], who[64];
    snprintf(action, sizeof action, "keys %s", o->cmd);
    peer_name(o->uid, o->pid, who, sizeof who);
    sl_events_emit(
        &k->b->events,
        &(sl_event){
            .kind = SL_EV_ADMIN,
            .principal = who,
            .listener = "ctl",
            .admin = {.action = action, .resource = o->resource, .success = ok, .detail = detail}});
    if (ok)
        SL_INFO("keys", "command done", "cmd=%s resource=\"%s\" uid=%u pid=%d", o->cmd, o->resource,
                (unsigned)o->uid, (int)o->pid);
    else
        SL_WARN("keys", "command failed", "cmd=%s resource=\"%s\" uid=%u pid=%d reason=\"%s\"",
                o->cmd, o->resource, (unsigned)o->uid, (int)o->pid, detail ? detail : "");
}

static void op_release_topics(op *o) {
    for (int i = 0; i < o->ntp; i++) sl_topic_release(o->tps[i]);
    free(o->tps);
    o->tps = NULL;
    o->ntp = 0;
}

/* Ends the command: the final line (if anyone still listens), the audit event, the slot. */
static void op_end(op *o, bool ok, const char *text) {
    sl_keyops *k = o->k;
    if (o->retry) sl_timer_cancel(k->b->loop, o->retry);
    audit(k, o, ok, ok ? NULL : text);
    if (o->c) sl_ctl_finish(o->c, ok, text);
    op_release_topics(o);
    if (k->busy == o) k->busy = NULL;
    free(o);
}

/* ---- status ---- */

/* Counts per topic-key version in a small fixed table (versions beyond it are lumped, which only
 * a broker with more than 32 live topic-key versions in one partition would see). */
#define TKV_SLOTS 32
typedef struct tkcount {
    uint32_t v[TKV_SLOTS];
    int n[TKV_SLOTS];
    int used;
} tkcount;

static void tk_add(tkcount *t, uint32_t v, int n) {
    for (int i = 0; i < t->used; i++)
        if (t->v[i] == v) {
            t->n[i] += n;
            return;
        }
    int i = t->used < TKV_SLOTS ? t->used++ : TKV_SLOTS - 1;
    t->v[i] = v;
    t->n[i] += n;
}

static void tk_json(sl_text *o, const tkcount *t) {
    sl_text_puts(o, "{");
    for (int i = 0; i < t->used; i++)
        sl_text_printf(o, "%s\"%" PRIu32 "\":%d", i ? "," : "", t->v[i], t->n[i]);
    sl_text_puts(o, "}");
}

/* Topic names are [a-zA-Z0-9._-] (sl_topic_name_valid), so they need no JSON escaping. */
static void status_json(sl_keyops *k, const char *only, sl_text *o) {
    sl_topics *ts = k->b->topics;
    sl_text_printf(o, "{\"encryption\":%s,\"keys\":", k->ks ? "true" : "false");
    size_t before = o->len;
    if (k->ks) sl_keysvc_status_json(k->ks, o);
    if (o->len == before) sl_text_puts(o, "null");
    if (k->b->gw) {
        /* A gateway stores no records: its keys are the record-encryption keys of the topics
         * it seals (sl_gwcrypt_key_id), listed by name when one is asked for (the keyring
         * holds only the ids, derived from the names). */
        sl_gwcrypt *g = k->b->gw->crypt;
        sl_text_printf(o, ",\"gateway\":{\"record_encryption\":%s", g ? "true" : "false");
        if (only) {
            uint8_t id[16];
            char hex[33];
            sl_gwcrypt_key_id(sl_str_c(only), id);
            sl_uuid_hex(id, hex);
            uint32_t vs[64];
            int n = k->ks ? sl_keysvc_key_versions(k->ks, id, vs, 64) : 0;
            sl_text_printf(o,
                           ",\"topic\":{\"name\":\"%s\",\"id\":\"%s\",\"encrypted\":%s,"
                           "\"tk_version\":%" PRIu32 "}",
                           only, hex, g && sl_gwcrypt_applies(g, sl_str_c(only)) ? "true" : "false",
                           n > 0 ? vs[n - 1] : 0);
        }
        sl_text_puts(o, "}");
    }
    sl_text_puts(o, ",\"topics\":[");
    int nt = 0;
    for (sl_topic *t = sl_topics_next(ts, NULL); t; t = sl_topics_next(ts, t)) {
        if (only && strcmp(only, t->name)) continue;
        char id[33];
        sl_uuid_hex(t->id.b, id);
        uint32_t cur = k->ks ? sl_keysvc_topic_version(k->ks, t->id.b) : 0;
        sl_text_printf(
            o, "%s{\"name\":\"%s\",\"id\":\"%s\",\"tk_version\":%" PRIu32 ",\"partitions\":[",
            nt++ ? "," : "", t->name, id, cur);
        tkcount all = {0};
        int pending = 0;
        for (int32_t p = 0; p < t->npart; p++) {
            sl_log *log = t->parts[p] ? t->parts[p]->log : NULL;
            if (!log) { /* not open: its keys or its data could not be opened at start */
                sl_text_printf(o, "%s{\"partition\":%d,\"available\":false}", p ? "," : "", (int)p);
                continue;
            }
            tkcount pc = {0};
            sl_text_printf(o, "%s{\"partition\":%d,\"available\":true,\"segments\":[", p ? "," : "",
                           (int)p);
            int64_t base;
            uint32_t v;
            for (int i = 0; sl_log_segment_info(log, i, &base, &v); i++) {
                sl_text_printf(o, "%s[%" PRId64 ",%" PRIu32 "]", i ? "," : "", base, v);
                tk_add(&pc, v, 1);
                tk_add(&all, v, 1);
            }
            int pp = cur ? sl_log_segments_pending(log, cur) : 0;
            pending += pp;
            sl_text_puts(o, "],\"by_tk_version\":");
            tk_json(o, &pc);
            sl_text_printf(o, ",\"pending\":%d}", pp);
        }
        sl_text_puts(o, "],\"by_tk_version\":");
        tk_json(o, &all);
        sl_text_printf(o, ",\"pending\":%d}", pending);
    }
    sl_text_puts(o, "]}");
}

static void cmd_status(sl_keyops *k, sl_ctl_conn *c, const char *only) {
    if (only && k->b->gw && !sl_topic_name_valid(sl_str_c(only))) {
        sl_ctl_finish(c, false, "invalid topic name");
        return;
    }
    if (only && !k->b->gw && !sl_topics_find(k->b->topics, sl_str_c(only))) {
        sl_ctl_finish(c, false, "no such topic");
        return;
    }
    sl_text t = {0};
    status_json(k, only, &t);
    if (t.oom) {
        sl_text_free(&t);
        sl_ctl_finish(c, false, "out of memory");
        return;
    }
    sl_ctl_send(c, "json", t.p);
    sl_text_free(&t);
    sl_ctl_finish(c, true, "status");
}

/* ---- key service commands ---- */

static void keysvc_done(void *ctx, sl_err e, const char *result) {
    op *o = ctx;
    o->in_keysvc = false;
    if (o->orphan) { /* the module is gone: nothing to report to */
        free(o);
        return;
    }
    char line[512];
    snprintf(line, sizeof line, "%s", result && result[0] ? result : e ? sl_strerror(e) : "done");
    op_end(o, e == SL_OK, line);
}

static void run_keysvc(op *o, sl_keyop kop, const uint8_t topic_id[16], uint32_t version) {
    static const uint8_t zero[16];
    o->in_keysvc = true;
    char reason[48];
    snprintf(reason, sizeof reason, "sluice keys %s", o->cmd);
    sl_keysvc_op(o->k->ks, kop, topic_id ? topic_id : zero, version, reason, keysvc_done, o);
}

/* ---- reencrypt ---- */

static void reenc_step(op *o);
static void reenc_fail(op *o, const char *what, sl_err e);

static void tk_rotated(void *ctx, sl_err e, const char *result) {
    op *o = ctx;
    o->in_keysvc = false;
    if (o->orphan) {
        free(o);
        return;
    }
    if (e) {
        reenc_fail(o, result && result[0] ? result : "cannot rotate the topic key", e);
        return;
    }
    if (o->c)
        sl_ctl_sendf(o->c, "info", "topic %s: new topic key v%" PRIu32, o->tps[o->ti]->name,
                     sl_keysvc_topic_version(o->k->ks, o->tps[o->ti]->id.b));
    reenc_step(o);
}

static void *worker_main(void *arg) {
    sl_keyops *k = arg;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (!k->w_stop && (!k->w_job || k->w_done)) pthread_cond_wait(&k->cv, &k->mu);
        if (k->w_job && !k->w_done) {
            sl_log_reenc *j = k->w_job;
            pthread_mutex_unlock(&k->mu);
            sl_err r = sl_log_reenc_run(j);
            pthread_mutex_lock(&k->mu);
            k->w_result = r;
            k->w_done = true;
            uint64_t one = 1;
            (void)!write(k->efd, &one, sizeof one);
            pthread_cond_broadcast(&k->cv);
            continue;
        }
        if (k->w_stop) break;
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

static sl_err worker_start(sl_keyops *k) {
    if (k->th_started) return SL_OK;
    if (pthread_create(&k->th, NULL, worker_main, k) != 0) return SL_ENOMEM;
    k->th_started = true;
    return SL_OK;
}

static void reenc_progress(op *o) {
    if (o->c) sl_ctl_sendf(o->c, "progress", "%d %d segments", o->done, o->total);
}

static void reenc_finish_all(op *o) {
    sl_keyops *k = o->k;
    int left = 0;
    for (int i = 0; i < o->ntp; i++) {
        sl_topic *t = o->tps[i];
        if (t->deleted) continue;
        uint32_t v = sl_keysvc_topic_version(k->ks, t->id.b);
        for (int32_t p = 0; p < t->npart; p++)
            if (t->parts[p] && t->parts[p]->log)
                left += sl_log_segments_pending(t->parts[p]->log, v);
    }
    char line[256];
    int n = snprintf(
        line, sizeof line, "re-encrypted %d segment%s in %d topic%s; %d segment%s pending", o->done,
        o->done == 1 ? "" : "s", o->ntp, o->ntp == 1 ? "" : "s", left, left == 1 ? "" : "s");
    /* An unavailable partition was not rewritten: not a success, whatever the count says. */
    if (o->skipped && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n,
                 "; %d partition%s unavailable (see the broker log), not re-encrypted", o->skipped,
                 o->skipped == 1 ? "" : "s");
    op_end(o, o->skipped == 0, line);
}

static void reenc_fail(op *o, const char *what, sl_err e) {
    char line[SL_TOPIC_NAME_MAX + 256];
    const char *tn = o->ti < o->ntp ? o->tps[o->ti]->name : "-";
    snprintf(line, sizeof line,
             "%s (topic %s partition %d): %s; %d of %d segments done, rerun "
             "to continue",
             what, tn, (int)o->pi, sl_strerror(e), o->done, o->total);
    op_end(o, false, line);
}

/* Each wait: a key the segment needs is being loaded by the key service (SL_EKEY_UNAVAILABLE);
 * the work resumes after it, within the KMS timeout and some slack. */
#define KEY_WAIT_MS 100

static void reenc_retry(void *ctx) {
    op *o = ctx;
    o->retry = NULL;
    reenc_step(o);
}

/* true when the error is worth waiting out (and the wait is scheduled). */
static bool reenc_wait_key(op *o, sl_err e) {
    int64_t budget = o->k->b->cfg.sluice_kms_timeout_ms * 2 + 5000;
    if (e != SL_EKEY_UNAVAILABLE || (int64_t)o->waits * KEY_WAIT_MS >= budget) return false;
    o->waits++;
    o->retry = sl_timer_start(o->k->b->loop, KEY_WAIT_MS, reenc_retry, o);
    return o->retry != NULL;
}

/* Picks the next segment and hands it to the worker; ends the command when none is left. */
static void reenc_step(op *o) {
    sl_keyops *k = o->k;
    if (!o->c) {
        char line[96];
        snprintf(line, sizeof line, "interrupted: the client left after %d of %d segments", o->done,
                 o->total);
        op_end(o, false, line);
        return;
    }
    if (k->b->stopping) {
        op_end(o, false, "the broker is stopping; rerun to continue");
        return;
    }
    while (o->ti < o->ntp) {
        sl_topic *t = o->tps[o->ti];
        if (t->deleted || o->pi >= t->npart) {
            o->ti++;
            o->pi = 0;
            o->tkv = 0;
            continue;
        }
        if (!o->tkv) {
            if (o->new_tk && o->rotated != o->ti + 1) {
                o->rotated = o->ti + 1;
                o->in_keysvc = true;
                sl_keysvc_op(k->ks, SL_KEYOP_TK_ROTATE, t->id.b, 0, "sluice keys reencrypt",
                             tk_rotated, o);
                return;
            }
            o->tkv = sl_keysvc_topic_version(k->ks, t->id.b);
            if (!o->tkv) {
                reenc_fail(o, "no topic key", SL_EKEY_DESTROYED);
                return;
            }
        }
        sl_log *log = t->parts[o->pi] ? t->parts[o->pi]->log : NULL;
        if (!log) {
            o->skipped++;
            o->pi++;
            continue;
        }
        sl_log_reenc *job = NULL;
        sl_err e = sl_log_reenc_prepare(log, o->tkv, &job);
        if (e && reenc_wait_key(o, e)) return;
        if (e) {
            reenc_fail(o, "cannot prepare a segment", e);
            return;
        }
        if (!job) {
            o->pi++;
            continue;
        }
        o->job = job;
        pthread_mutex_lock(&k->mu);
        k->w_job = job;
        k->w_done = false;
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
        return;
    }
    reenc_finish_all(o);
}

static void worker_ready(void *ctx, uint32_t ev) {
    sl_keyops *k = ctx;
    uint64_t n;
    (void)!read(k->efd, &n, sizeof n);
    pthread_mutex_lock(&k->mu);
    bool done = k->w_job && k->w_done;
    sl_err r = k->w_result;
    if (done) k->w_job = NULL, k->w_done = false;
    pthread_mutex_unlock(&k->mu);
    op *o = k->busy;
    if (!done || !o || !o->job) return;
    sl_err e = sl_log_reenc_finish(o->job, r);
    o->job = NULL;
    /* The segment was left as it was: redo it once the key is loaded. */
    if ((e == SL_OK || e == r) && reenc_wait_key(o, r)) return;
    if (r || e) {
        reenc_fail(o, "cannot re-encrypt a segment", r ? r : e);
        return;
    }
    o->done++;
    o->waits = 0;
    reenc_progress(o);
    reenc_step(o);
}

static void cmd_reencrypt(sl_keyops *k, op *o, const char *only) {
    sl_topics *ts = k->b->topics;
    int n = only ? 1 : sl_topics_count(ts);
    o->tps = calloc((size_t)(n > 0 ? n : 1), sizeof *o->tps);
    if (!o->tps) {
        op_end(o, false, "out of memory");
        return;
    }
    for (sl_topic *t = sl_topics_next(ts, NULL); t && o->ntp < n; t = sl_topics_next(ts, t)) {
        if (only && strcmp(only, t->name)) continue;
        uint32_t v = sl_keysvc_topic_version(k->ks, t->id.b);
        if (!v) {
            char line[SL_TOPIC_NAME_MAX + 64];
            snprintf(line, sizeof line, "topic %s has no topic key (shredded?)", t->name);
            op_end(o, false, line);
            return;
        }
        sl_topic_hold(t);
        o->tps[o->ntp++] = t;
        for (int32_t p = 0; p < t->npart; p++)
            if (t->parts[p] && t->parts[p]->log)
                o->total += o->new_tk ? sl_log_segment_count(t->parts[p]->log)
                                      : sl_log_segments_pending(t->parts[p]->log, v);
    }
    if (only && !o->ntp) {
        op_end(o, false, "no such topic");
        return;
    }
    if (worker_start(k) != SL_OK) {
        op_end(o, false, "cannot start the re-encryption thread");
        return;
    }
    reenc_progress(o);
    reenc_step(o);
}

/* ---- dispatch ---- */

static bool parse_u32(const char *s, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || v == 0 || v > UINT32_MAX || s[0] == '-' || s[0] == '+')
        return false;
    *out = (uint32_t)v;
    return true;
}

static void on_request(void *ctx, sl_ctl_conn *c, const sl_ctl_req *req) {
    sl_keyops *k = ctx;
    const char *cmd = req->argv[0];
    int argc = req->argc;
    if (!strcmp(cmd, "status")) {
        if (argc > 2) {
            sl_ctl_finish(c, false, "usage: status [<topic>]");
            return;
        }
        cmd_status(k, c, argc == 2 ? req->argv[1] : NULL);
        return;
    }
    bool rotate = !strcmp(cmd, "rotate"), rewrap = !strcmp(cmd, "rewrap"),
         retire = !strcmp(cmd, "retire"), shred = !strcmp(cmd, "shred"),
         reenc = !strcmp(cmd, "reencrypt");
    if (!rotate && !rewrap && !retire && !shred && !reenc) {
        if (sl_fprot_ctl(k->fprot, k->b, k->ks, c, req)) return;
        sl_ctl_finish(c, false, "unknown command");
        return;
    }
    if ((rotate && argc > 2) || (rewrap && argc != 1) || (retire && argc != 2) ||
        (shred && argc != 3) || (reenc && argc > 3)) {
        sl_ctl_finish(c, false, "wrong arguments for the command");
        return;
    }
    uint32_t version = 0;
    if (retire && !parse_u32(req->argv[1], &version)) {
        sl_ctl_finish(c, false, "retire needs a KEK version number (1, 2, ...)");
        return;
    }
    if (shred && strcmp(req->argv[1], req->argv[2])) {
        sl_ctl_finish(c, false, "shred needs the topic name twice, identical");
        return;
    }
    const char *topic = shred || (rotate && argc == 2) ? req->argv[1] : NULL;
    bool gw = k->b->gw != NULL;
    if (gw && reenc) {
        sl_ctl_finish(c, false,
                      "a gateway stores no records: nothing to re-encrypt (rotate --topic T "
                      "gives a topic's new records a new key version)");
        return;
    }
    if (!gw && rotate && topic) {
        sl_ctl_finish(c, false,
                      "rotate --topic is for a gateway's topic keys; on a broker run reencrypt "
                      "--topic T --new-topic-key");
        return;
    }
    bool new_tk = false;
    for (int i = 1; reenc && i < argc; i++) {
        /* Options start with '+', which no topic name holds (sl_topic_name_valid). */
        if (!strcmp(req->argv[i], "+new-topic-key") && !new_tk) {
            new_tk = true;
        } else if (req->argv[i][0] != '+' && !topic) {
            topic = req->argv[i];
        } else {
            sl_ctl_finish(c, false, "wrong arguments for reencrypt");
            return;
        }
    }
    if (topic && !sl_topic_name_valid(sl_str_c(topic))) {
        sl_ctl_finish(c, false, "invalid topic name");
        return;
    }
    op *o = calloc(1, sizeof *o);
    if (!o) {
        sl_ctl_finish(c, false, "out of memory");
        return;
    }
    o->k = k;
    o->c = c;
    snprintf(o->cmd, sizeof o->cmd, "%s", cmd);
    sl_ctl_conn_peer(c, &o->uid, &o->pid);
    if (topic)
        snprintf(o->resource, sizeof o->resource, "%stopic %s", gw ? "gateway " : "", topic);
    else if (retire)
        snprintf(o->resource, sizeof o->resource, "KEK version %" PRIu32, version);
    else
        snprintf(o->resource, sizeof o->resource, reenc ? "all topics" : "keyring");
    if (k->busy) {
        char line[96];
        snprintf(line, sizeof line, "another key command (%s) is running; try again when it ends",
                 k->busy->cmd);
        o->c = NULL;
        sl_ctl_finish(c, false, line);
        audit(k, o, false, "busy");
        free(o);
        return;
    }
    k->busy = o;
    if (!k->ks) {
        op_end(o, false, "encryption at rest is off (sluice.encryption.enable)");
        return;
    }
    if (k->b->stopping) {
        op_end(o, false, "the broker is stopping");
        return;
    }
    if (gw && topic) {
        /* The gateway's key of the topic (gateway/sl_gwcrypt.h): its id is derived from the
         * name, so a topic the upstream owns needs no registry here. */
        sl_gwcrypt *g = k->b->gw->crypt;
        uint8_t id[16];
        sl_gwcrypt_key_id(sl_str_c(topic), id);
        if (rotate && (!g || !sl_gwcrypt_applies(g, sl_str_c(topic)))) {
            op_end(o, false,
                   g ? "the gateway does not encrypt this topic (sluice.gateway.encrypt.topics)"
                     : "the gateway's record encryption is off (sluice.gateway.encrypt.enable)");
            return;
        }
        /* rotate creates version 1 of a topic nothing was written to yet (so that gateways
         * sharing a keyring can be given the key before traffic), never a shredded one's. */
        uint32_t vs[1];
        if (!sl_keysvc_key_versions(k->ks, id, vs, 1)) {
            uint8_t tk[32];
            sl_err ke = sl_keysvc_key_get(k->ks, id, 0, tk, NULL);
            OPENSSL_cleanse(tk, sizeof tk);
            if (!rotate || ke == SL_EKEY_DESTROYED) {
                op_end(o, false,
                       ke == SL_EKEY_DESTROYED
                           ? "the topic's gateway key is shredded"
                           : "the topic has no gateway key (nothing was written to it yet)");
                return;
            }
        }
        run_keysvc(o, rotate ? SL_KEYOP_TK_ROTATE : SL_KEYOP_SHRED, id, 0);
        return;
    }
    if (rotate || rewrap || retire) {
        run_keysvc(o,
                   rotate   ? SL_KEYOP_ROTATE
                   : rewrap ? SL_KEYOP_REWRAP
                            : SL_KEYOP_RETIRE,
                   NULL, version);
        return;
    }
    if (shred) {
        sl_topic *t = sl_topics_find(k->b->topics, sl_str_c(topic));
        if (!t) {
            op_end(o, false, "no such topic");
            return;
        }
        run_keysvc(o, SL_KEYOP_SHRED, t->id.b, 0);
        return;
    }
    o->new_tk = new_tk;
    cmd_reencrypt(k, o, topic);
}

static void on_gone(void *ctx, sl_ctl_conn *c) {
    sl_keyops *k = ctx;
    /* Only a lifecycle command outlives a request: status answers within its call. */
    if (k->busy && k->busy->c == c) k->busy->c = NULL;
    sl_fprot_ctl_gone(k->fprot, c);
}

static void on_refused(void *ctx, uid_t uid, pid_t pid) {
    sl_keyops *k = ctx;
    char who[64];
    peer_name(uid, pid, who, sizeof who);
    sl_events_emit(&k->b->events,
                   &(sl_event){.kind = SL_EV_ADMIN,
                               .principal = who,
                               .listener = "ctl",
                               .admin = {.action = "control connection",
                                         .resource = "control socket",
                                         .success = false,
                                         .detail = "peer uid is neither the broker's nor root"}});
}

sl_err sl_keyops_new(sl_broker *b, sl_keysvc *ks, sl_keyops **out, char *err, size_t errlen) {
    *out = NULL;
    sl_keyops *k = calloc(1, sizeof *k);
    if (!k) return SL_ENOMEM;
    k->b = b;
    k->ks = ks;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (k->efd < 0 || sl_loop_watch(b->loop, k->efd, SL_EV_READ, worker_ready, k) != SL_OK) {
        snprintf(err, errlen, "control socket: cannot create its event descriptor");
        if (k->efd >= 0) close(k->efd);
        pthread_mutex_destroy(&k->mu);
        pthread_cond_destroy(&k->cv);
        free(k);
        return SL_EIO;
    }
    char path[SL_CFG_STR_MAX + 32];
    sl_ctl_socket_path(&b->cfg, path, sizeof path);
    sl_ctl_handlers h = {
        .ctx = k, .on_request = on_request, .on_gone = on_gone, .on_refused = on_refused};
    sl_err e = sl_ctl_new(b->loop, path, &h, &k->ctl, err, errlen);
    if (e) {
        sl_loop_unwatch(b->loop, k->efd);
        close(k->efd);
        pthread_mutex_destroy(&k->mu);
        pthread_cond_destroy(&k->cv);
        free(k);
        return e;
    }
    *out = k;
    return SL_OK;
}

void sl_keyops_set_fprot(sl_keyops *k, sl_fprot *f) {
    if (k) k->fprot = f;
}

void sl_keyops_free(sl_keyops *k) {
    if (!k) return;
    if (k->th_started) {
        pthread_mutex_lock(&k->mu);
        k->w_stop = true;
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
        pthread_join(k->th, NULL); /* after the segment in hand, if any */
    }
    op *o = k->busy;
    if (o && o->job) {
        /* The worker ran the job before it stopped (it finishes a job it has): apply it, so the
         * log's in-memory state matches the file that the rename put in place. */
        sl_err r = k->w_done ? k->w_result : SL_ECLOSED;
        (void)sl_log_reenc_finish(o->job, r);
        o->job = NULL;
        if (!r) o->done++;
    }
    if (o && o->in_keysvc) {
        o->orphan = true; /* the key service's callback frees it */
        op_release_topics(o);
    } else if (o) {
        /* Told while the socket still exists (written if the peer's buffer has room). */
        char line[128];
        snprintf(line, sizeof line,
                 "the broker is stopping: %d of %d segments done; rerun to continue", o->done,
                 o->total);
        op_end(o, false, !strcmp(o->cmd, "reencrypt") ? line : "the broker is stopping");
    }
    sl_ctl_free(k->ctl); /* on_gone for a command left with the key service */
    sl_loop_unwatch(k->b->loop, k->efd);
    close(k->efd);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    free(k);
}
