/* The transaction coordinator in `sluice serve` (issue 16; docs/transactions.md): the broker
 * glue over src/txn/sl_txn.h (its durable log in log.dirs), and the transactional APIs:
 * InitProducerId with a transactional id (called from sl_h_producer_id.c), AddPartitionsToTxn
 * (v0-3 from producers; v4, KIP-890's batched broker-to-broker form), AddOffsetsToTxn, EndTxn,
 * TxnOffsetCommit, DescribeTransactions, ListTransactions.
 *
 * A decision (PrepareCommit/PrepareAbort, durable in the coordinator's log) is finished here:
 * on a commit, the transaction's pending group offsets are committed to their groups (durable
 * in the offsets log); then a marker is written to every partition of the transaction and made
 * durable (an EndTxn: appended on the loop, synced by the flusher, all partitions side by side;
 * the timer's retries: sl_txnpart_write_marker, synchronously); then sl_txn_complete. EndTxn and
 * InitProducerId answer only after that. A decision whose finishing failed, and those a crash
 * interrupted, stay in Prepare* and are finished again by the timer and at start (markers are
 * idempotent).
 *
 * Pending offsets (TxnOffsetCommit) are held per (producer id, group) until the decision:
 * applied on commit, dropped on abort. They are saved (fsynced) in a file per producer id before
 * the TxnOffsetCommit answer (the coordinator's log does not hold them), so a commit decided
 * before a crash gets them at start, before its markers. docs/transactions.md.
 *
 * Authorization decisions come from the pipeline's stage (pipeline/sl_api.c names the
 * resources); the handlers read them with sl_req_allowed. Loop thread only. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "base/sl_crc32c.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "proto/gen/sl_msgs.h"
#include "txn/sl_txn.h"

#define SUB          "txn"
#define TICK_MS      1000
#define OFF_META_MAX 4096

/* One offset a transaction committed for a group (TxnOffsetCommit), until its decision. */
typedef struct pend_off {
    struct pend_off *next;
    int64_t pid;
    char *group, *topic, *meta; /* owned; meta NULL: none */
    int32_t partition, leader_epoch, meta_len;
    int64_t offset;
} pend_off;

struct sl_txn_coord {
    sl_broker *b;
    sl_txn *txn;
    sl_timer *timer;
    pend_off *pend;
    int inflight; /* decisions being finished by an EndTxn waiting for the offsets log */
};

static bool finish_commit_async(sl_txn_coord *tc, const sl_txn_rec *j, const char *why);

static void pend_free(pend_off *p) {
    free(p->group);
    free(p->topic);
    free(p->meta);
    free(p);
}

static char *dupstr(sl_str s) {
    char *p = malloc((size_t)(s.len > 0 ? s.len : 0) + 1);
    if (!p) return NULL;
    if (s.len > 0) memcpy(p, s.p, (size_t)s.len);
    p[s.len > 0 ? s.len : 0] = 0;
    return p;
}

/* Drops the pending offsets of `pid` (all groups). */
static void drop_pending(sl_txn_coord *tc, int64_t pid) {
    for (pend_off **pp = &tc->pend; *pp;) {
        if ((*pp)->pid == pid) {
            pend_off *x = *pp;
            *pp = x->next;
            pend_free(x);
        } else {
            pp = &(*pp)->next;
        }
    }
}

static sl_err put_pending(sl_txn_coord *tc, int64_t pid, sl_str group, sl_str topic,
                          int32_t partition, int64_t offset, int32_t leader_epoch, sl_str meta) {
    pend_off *x = NULL;
    for (pend_off *p = tc->pend; p && !x; p = p->next)
        if (p->pid == pid && p->partition == partition && sl_str_eqc(group, p->group) &&
            sl_str_eqc(topic, p->topic))
            x = p;
    char *m = meta.len >= 0 ? dupstr(meta) : NULL;
    if (meta.len >= 0 && !m) return SL_ENOMEM;
    if (!x) {
        x = calloc(1, sizeof *x);
        if (!x || !(x->group = dupstr(group)) || !(x->topic = dupstr(topic))) {
            if (x) free(x->group);
            free(x);
            free(m);
            return SL_ENOMEM;
        }
        x->pid = pid;
        x->partition = partition;
        x->next = tc->pend;
        tc->pend = x;
    }
    free(x->meta);
    x->meta = m;
    x->meta_len = meta.len;
    x->offset = offset;
    x->leader_epoch = leader_epoch;
    return SL_OK;
}

/* ---- pending offsets on disk ----
 *
 * <log.dirs>/sluice-txn-offsets/<producer id>: the producer's pending offsets, rewritten
 * atomically (sl_file_write_atomic) by every TxnOffsetCommit before it is answered, removed once
 * its transaction completes. At start the files of transactions still Ongoing or
 * PrepareCommit are loaded (a commit decided before a crash then gets its offsets); the others
 * are removed. Layout: "SLTO" | u32 version 1 | entries | u32 CRC-32C of all before; an entry:
 * u16 group length | group | u16 topic length | topic | i32 partition | i64 offset |
 * i32 leader epoch | i32 metadata length (-1: none) | metadata. Big-endian. */
#define OFF_DIR   "sluice-txn-offsets"
#define OFF_MAGIC "SLTO"

static void off_dir(const sl_txn_coord *tc, char *out, size_t n) {
    snprintf(out, n, "%s/%s", tc->b->cfg.log_dirs, OFF_DIR);
}

typedef struct obuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} obuf;

static void ob_put(obuf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void ob_be(obuf *b, uint64_t v, int bytes) {
    uint8_t x[8];
    for (int i = 0; i < bytes; i++) x[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    ob_put(b, x, (size_t)bytes);
}

/* Writes pid's pending offsets durably (the file removed when it has none). */
static sl_err save_pending(sl_txn_coord *tc, int64_t pid) {
    char dir[SL_CFG_STR_MAX + 32], name[32];
    off_dir(tc, dir, sizeof dir);
    snprintf(name, sizeof name, "%lld", (long long)pid);
    obuf b = {0};
    ob_put(&b, OFF_MAGIC, 4);
    ob_be(&b, 1, 4);
    int n = 0;
    for (pend_off *p = tc->pend; p; p = p->next) {
        if (p->pid != pid) continue;
        size_t gl = strlen(p->group), tl = strlen(p->topic);
        ob_be(&b, gl, 2);
        ob_put(&b, p->group, gl);
        ob_be(&b, tl, 2);
        ob_put(&b, p->topic, tl);
        ob_be(&b, (uint32_t)p->partition, 4);
        ob_be(&b, (uint64_t)p->offset, 8);
        ob_be(&b, (uint32_t)p->leader_epoch, 4);
        ob_be(&b, (uint32_t)(p->meta ? p->meta_len : -1), 4);
        if (p->meta) ob_put(&b, p->meta, (size_t)p->meta_len);
        n++;
    }
    ob_be(&b, b.oom ? 0 : sl_crc32c(0, b.p, b.len), 4);
    sl_err e = b.oom ? SL_ENOMEM : SL_OK;
    if (!e && n) e = sl_file_write_atomic(dir, name, b.p, b.len, 0600);
    free(b.p);
    if (!e && !n) {
        char path[sizeof dir + sizeof name + 1];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (unlink(path) == 0) (void)sl_fsync_dir(dir);
    }
    return e;
}

static uint64_t rd_be(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = v << 8 | p[i];
    return v;
}

/* Loads pid's saved offsets into memory; false when the file is damaged (it is then ignored). */
static bool load_pending(sl_txn_coord *tc, const char *path, int64_t pid) {
    char *data = NULL;
    size_t len = 0;
    if (sl_file_read(path, 64u * 1024 * 1024, &data, &len)) return false;
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    bool ok = len >= 12 && !memcmp(p, OFF_MAGIC, 4) && rd_be(p + 4, 4) == 1 &&
              rd_be(end - 4, 4) == sl_crc32c(0, p, len - 4);
    if (ok) {
        end -= 4;
        p += 8;
        while (ok && p < end) {
            if (end - p < 2) break;
            size_t gl = rd_be(p, 2);
            if ((size_t)(end - p) < 2 + gl + 2) break;
            sl_str g = {(const char *)p + 2, (int32_t)gl};
            p += 2 + gl;
            size_t tl = rd_be(p, 2);
            if ((size_t)(end - p) < 2 + tl + 20) break;
            sl_str t = {(const char *)p + 2, (int32_t)tl};
            p += 2 + tl;
            int32_t part = (int32_t)rd_be(p, 4), le = (int32_t)rd_be(p + 12, 4);
            int64_t off = (int64_t)rd_be(p + 4, 8);
            int32_t ml = (int32_t)rd_be(p + 16, 4);
            p += 20;
            if (ml < -1 || (ml > 0 && end - p < ml)) break;
            sl_str m = ml < 0 ? SL_STR_NULL : (sl_str){(const char *)p, ml};
            p += ml > 0 ? ml : 0;
            if (put_pending(tc, pid, g, t, part, off, le, m)) break;
        }
        ok = p == end;
    }
    free(data);
    if (!ok) SL_WARN(SUB, "ignored a damaged transaction offsets file", "path=%s", path);
    return ok;
}

static void pid_wanted(void *ctx, const sl_txn_rec *r) {
    int64_t *want = ctx; /* [0]: the pid asked about, [1]: set to 1 when wanted */
    if (r->pid == want[0] && (r->state == SL_TXN_ONGOING || r->state == SL_TXN_PREPARE_COMMIT))
        want[1] = 1;
}

/* At start: loads the offsets files of transactions that may still commit, removes the rest. */
static void load_all_pending(sl_txn_coord *tc) {
    char dir[SL_CFG_STR_MAX + 32];
    off_dir(tc, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d) return;
    bool removed = false;
    for (struct dirent *de; (de = readdir(d));) {
        char *endp;
        long long pid = strtoll(de->d_name, &endp, 10);
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || *endp) continue;
        char path[sizeof dir + 300];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int64_t want[2] = {pid, 0};
        sl_txn_foreach(tc->txn, pid_wanted, want);
        if (!want[1] || !load_pending(tc, path, pid)) {
            drop_pending(tc, pid);
            removed |= unlink(path) == 0;
        }
    }
    closedir(d);
    if (removed) (void)sl_fsync_dir(dir);
}

/* ---- finishing decisions ---- */

static sl_err write_markers(sl_txn_coord *tc, const sl_txn_rec *j) {
    bool commit = j->state == SL_TXN_PREPARE_COMMIT;
    for (int32_t i = 0; i < j->ntopics; i++) {
        const sl_txn_topic *t = &j->topics[i];
        for (int32_t k = 0; k < t->nparts; k++) {
            sl_partition *p = sl_topics_partition(tc->b->topics, sl_str_c(t->name), t->parts[k]);
            if (!p) continue; /* deleted since: nothing left to mark */
            if (p->unavailable) return p->unavailable;
            bool failing = sl_txnpart_failing(p);
            sl_err e = sl_txnpart_write_marker(p, j->pid, j->epoch, commit, 0);
            if (e) {
                /* A partition already failing said so at ERROR: the retries every tick would
                 * otherwise warn forever until the restart it needs. */
                sl_log_level lvl = failing ? SL_LOG_DEBUG : SL_LOG_WARN;
                sl_logf(lvl, SUB, "cannot write a transaction marker; will retry",
                        "transactional_id=%s topic=%s partition=%d error=%s", j->tid, t->name,
                        t->parts[k], sl_strerror(e));
                return e;
            }
        }
    }
    return SL_OK;
}

/* Markers, then Complete*. NONE, or COORDINATOR_NOT_AVAILABLE (the decision stays pending:
 * the timer finishes it). Pending offsets of an abort are dropped. */
static int16_t finish_job(sl_txn_coord *tc, const sl_txn_rec *j) {
    if (write_markers(tc, j)) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    sl_str tid = {j->tid, j->tid_len};
    int16_t code = sl_txn_complete(tc->txn, tid, j->pid, j->epoch, sl_wall_ms());
    if (code) {
        SL_WARN(SUB, "cannot complete a transaction; will retry", "transactional_id=%s error=%d",
                j->tid, code);
        return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    }
    drop_pending(tc, j->pid);
    (void)save_pending(tc, j->pid); /* nothing left: removes the file */
    return SL_KAFKA_NONE;
}

static void finish_jobs(sl_txn_coord *tc, sl_txn_jobs *jobs, const char *why) {
    for (size_t i = 0; i < jobs->n; i++) {
        const sl_txn_rec *j = &jobs->v[i];
        if (!finish_job(tc, j))
            SL_INFO(SUB, why, "transactional_id=%s producer_id=%lld epoch=%d outcome=%s", j->tid,
                    (long long)j->pid, j->epoch,
                    j->state == SL_TXN_PREPARE_COMMIT ? "commit" : "abort");
    }
}

static bool has_pending(const sl_txn_coord *tc, int64_t pid) {
    for (const pend_off *p = tc->pend; p; p = p->next)
        if (p->pid == pid) return true;
    return false;
}

/* Finishes every decision in Prepare*: a commit with saved offsets applies them first
 * (asynchronously); the rest at once. Applying offsets again is harmless (same values). */
static void finish_pending(sl_txn_coord *tc, const char *why) {
    sl_txn_jobs jobs = {0};
    if (sl_txn_pending(tc->txn, &jobs) != SL_OK) return;
    for (size_t i = 0; i < jobs.n; i++) {
        const sl_txn_rec *j = &jobs.v[i];
        if (j->state == SL_TXN_PREPARE_COMMIT && has_pending(tc, j->pid) &&
            finish_commit_async(tc, j, why))
            continue;
        sl_txn_jobs one = {.v = (sl_txn_rec *)j, .n = 1};
        finish_jobs(tc, &one, why);
    }
    sl_txn_jobs_free(&jobs);
}

static void tick(void *ctx) {
    sl_txn_coord *tc = ctx;
    tc->timer = NULL;
    sl_txn_jobs jobs = {0};
    sl_err e = sl_txn_expire(tc->txn, sl_wall_ms(), &jobs);
    if (e) SL_WARN(SUB, "transaction expiry failed; will retry", "error=%s", sl_strerror(e));
    finish_jobs(tc, &jobs, "aborted a timed-out transaction");
    sl_txn_jobs_free(&jobs);
    /* Decisions whose finishing failed earlier (not those an EndTxn is finishing now). */
    if (!tc->inflight) finish_pending(tc, "finished a pending transaction decision");
    tc->timer = sl_timer_start(tc->b->loop, TICK_MS, tick, tc);
}

static sl_err alloc_pid(void *ctx, int64_t *pid) {
    sl_broker *b = ctx;
    if (!b->producers) return SL_ESTATE;
    return sl_pid_alloc_next(b->producers->pids, pid);
}

sl_err sl_txn_coord_new(sl_broker *b, sl_txn_coord **out, char *err, size_t elen) {
    sl_txn_coord *tc = calloc(1, sizeof *tc);
    if (!tc) return SL_ENOMEM;
    tc->b = b;
    sl_txn_config cfg = {.max_timeout_ms = b->cfg.transaction_max_timeout_ms,
                         .id_expiration_ms = b->cfg.transactional_id_expiration_ms,
                         .alloc_pid = alloc_pid,
                         .alloc_ctx = b};
    char dir[SL_CFG_STR_MAX + 32];
    off_dir(tc, dir, sizeof dir);
    sl_err e = sl_mkdir_p(dir, 0700);
    if (e) {
        snprintf(err, elen, "%s: cannot create: %s", dir, sl_strerror(e));
        free(tc);
        return e;
    }
    e = sl_txn_open(b->cfg.log_dirs, &cfg, &tc->txn, err, elen);
    if (e) {
        free(tc);
        return e;
    }
    SL_INFO(SUB, "transaction coordinator open", "transactional_ids=%zu", sl_txn_count(tc->txn));
    *out = tc;
    return SL_OK;
}

void sl_txn_coord_start(sl_txn_coord *tc) {
    if (!tc) return;
    load_all_pending(tc);
    /* Decisions a crash interrupted: a commit's saved offsets, then the markers. */
    finish_pending(tc, "finished a transaction decided before the restart");
    tc->timer = sl_timer_start(tc->b->loop, TICK_MS, tick, tc);
}

void sl_txn_coord_free(sl_txn_coord *tc) {
    if (!tc) return;
    if (tc->timer) sl_timer_cancel(tc->b->loop, tc->timer);
    while (tc->pend) {
        pend_off *x = tc->pend;
        tc->pend = x->next;
        pend_free(x);
    }
    sl_txn_close(tc->txn);
    free(tc);
}

int64_t sl_txn_coord_max_pid(const sl_txn_coord *tc) { return tc ? sl_txn_max_pid(tc->txn) : -1; }

typedef struct each_ctx {
    void (*fn)(void *arg, sl_str id);
    void *arg;
} each_ctx;

static void each_one(void *ctx, const sl_txn_rec *r) {
    each_ctx *c = ctx;
    c->fn(c->arg, (sl_str){r->tid, r->tid_len});
}

void sl_txn_coord_each_id(void *ctx, void (*fn)(void *arg, sl_str id), void *arg) {
    sl_broker *b = ctx;
    if (!b->txn) return;
    each_ctx c = {fn, arg};
    sl_txn_foreach(b->txn->txn, each_one, &c);
}

typedef struct pid_ctx {
    int64_t pid;
    bool found;
} pid_ctx;

static void pid_one(void *ctx, const sl_txn_rec *r) {
    pid_ctx *c = ctx;
    c->found |= r->pid == c->pid || r->last_pid == c->pid;
}

bool sl_txn_coord_has_pid(sl_broker *b, int64_t pid) {
    if (!b->txn || pid < 0) return false;
    pid_ctx c = {pid, false};
    sl_txn_foreach(b->txn->txn, pid_one, &c);
    return c.found;
}

bool sl_txn_coord_offset_pending(sl_broker *b, sl_str group, sl_str topic, int32_t partition) {
    if (!b->txn) return false;
    for (const pend_off *p = b->txn->pend; p; p = p->next)
        if (p->partition == partition && sl_str_eqc(group, p->group) && sl_str_eqc(topic, p->topic))
            return true;
    return false;
}

int16_t sl_txn_coord_verify(sl_broker *b, sl_str tid, int64_t pid, int16_t epoch, sl_str topic,
                            int32_t partition) {
    if (!b->txn) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    sl_txn_tp tp = {topic, partition};
    return sl_txn_verify_partitions(b->txn->txn, tid, pid, epoch, &tp, 1);
}

/* ---- handlers ---- */

/* Kafka answers INVALID_PRODUCER_EPOCH to versions that predate PRODUCER_FENCED. */
static int16_t fenced_for(int16_t code, int16_t version, int16_t since) {
    return code == SL_KAFKA_PRODUCER_FENCED && version < since ? SL_KAFKA_INVALID_PRODUCER_EPOCH
                                                               : code;
}

int16_t sl_txn_coord_init_producer_id(sl_req *rq, sl_str tid, int32_t timeout_ms,
                                      int64_t expected_pid, int16_t expected_epoch, int64_t *pid,
                                      int16_t *epoch) {
    sl_txn_coord *tc = rq->b->txn;
    if (!tc) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    sl_txn_jobs abort_job = {0};
    int16_t code = sl_txn_init_producer_id(tc->txn, tid, timeout_ms, expected_pid, expected_epoch,
                                           sl_wall_ms(), pid, epoch, &abort_job);
    /* An ongoing transaction of the previous epoch was fenced: abort it before answering (the
     * client retries on CONCURRENT_TRANSACTIONS and then finds it complete). */
    finish_jobs(tc, &abort_job, "aborted the transaction of a fenced producer");
    sl_txn_jobs_free(&abort_job);
    return fenced_for(code, rq->h.api_version, 4);
}

/* One transaction of a v4 request: its partitions must all exist (else each answers its own
 * error and the rest OPERATION_NOT_ATTEMPTED, nothing added, as v0-3); then they are added, or
 * with verify_only each answers whether it already is in the ongoing transaction (NONE, or
 * INVALID_TXN_STATE; CONCURRENT_TRANSACTIONS while the transaction is being ended), nothing
 * written. Fencing and id-mapping errors answer every partition of the transaction. */
static bool add_one_txn(sl_req *rq, const sl_add_partitions_to_txn_req_transaction *x,
                        sl_add_partitions_to_txn_resp_txn_result *o) {
    o->transactional_id = x->transactional_id;
    if (!SL_RESP_MIRROR(rq, x->topics, x->topics_count, partitions_count, o->topic_results,
                        o->topic_results_count, results_by_partition, results_by_partition_count))
        return false;
    int32_t total = 0;
    for (int32_t i = 0; i < x->topics_count; i++) total += x->topics[i].partitions_count;
    sl_txn_tp *tps = sl_arena_calloc(rq->a, (size_t)(total ? total : 1), sizeof *tps);
    if (!tps) return false;
    sl_txn *txn = rq->b->txn ? rq->b->txn->txn : NULL;
    int16_t all = txn ? 0 : SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    bool refused = false;
    int32_t k = 0;
    for (int32_t i = 0; i < x->topics_count; i++) {
        sl_add_partitions_to_txn_resp_txn_topic_result *ot = &o->topic_results[i];
        ot->name = x->topics[i].name;
        sl_topic *t = sl_topics_find(rq->b->topics, x->topics[i].name);
        for (int32_t j = 0; j < x->topics[i].partitions_count; j++) {
            int32_t part = x->topics[i].partitions[j];
            int16_t e =
                !t || part < 0 || part >= t->npart ? SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION : 0;
            ot->results_by_partition[j].partition_index = part;
            ot->results_by_partition[j].partition_error_code = e;
            refused |= e != 0;
            tps[k++] = (sl_txn_tp){x->topics[i].name, part};
        }
    }
    if (!all && !refused && !x->verify_only)
        all = sl_txn_add_partitions(txn, x->transactional_id, x->producer_id, x->producer_epoch,
                                    tps, (size_t)total, sl_wall_ms());
    k = 0;
    for (int32_t i = 0; i < o->topic_results_count; i++)
        for (int32_t j = 0; j < o->topic_results[i].results_by_partition_count; j++, k++) {
            int16_t *e = &o->topic_results[i].results_by_partition[j].partition_error_code;
            if (all)
                *e = all;
            else if (refused)
                *e = *e ? *e : SL_KAFKA_OPERATION_NOT_ATTEMPTED;
            else if (x->verify_only)
                *e = sl_txn_verify_partitions(txn, x->transactional_id, x->producer_id,
                                              x->producer_epoch, &tps[k], 1);
        }
    if (!all && !refused && x->verify_only) {
        /* Kafka answers a transaction being ended as a whole, before looking at partitions. */
        const sl_txn_rec *r = NULL;
        if (!sl_txn_describe(txn, x->transactional_id, &r) && r && r->pid == x->producer_id &&
            r->epoch == x->producer_epoch &&
            (r->state == SL_TXN_PREPARE_COMMIT || r->state == SL_TXN_PREPARE_ABORT))
            for (int32_t i = 0; i < o->topic_results_count; i++)
                for (int32_t j = 0; j < o->topic_results[i].results_by_partition_count; j++)
                    o->topic_results[i].results_by_partition[j].partition_error_code =
                        SL_KAFKA_CONCURRENT_TRANSACTIONS;
    }
    return true;
}

/* v4+: sent by brokers only, so CLUSTER_ACTION on the cluster is the whole authorization (no
 * transactional id or topic ACLs, as Kafka); denied, the answer is the top-level
 * CLUSTER_AUTHORIZATION_FAILED with no transactions. */
static void add_partitions_batched(sl_req *rq, const sl_add_partitions_to_txn_req *req) {
    sl_add_partitions_to_txn_resp resp;
    sl_add_partitions_to_txn_resp_init(&resp);
    if (!sl_req_allowed_cluster(rq, SL_ACL_OP_CLUSTER_ACTION)) {
        resp.error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        SL_RESPOND(rq, add_partitions_to_txn, &resp);
        return;
    }
    if (!SL_RESP_ARRAY(rq, resp.results_by_transaction, resp.results_by_transaction_count,
                       req->transactions_count))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < resp.results_by_transaction_count; i++)
        if (!add_one_txn(rq, &req->transactions[i], &resp.results_by_transaction[i]))
            return sl_req_fail(rq, "out of memory");
    SL_RESPOND(rq, add_partitions_to_txn, &resp);
}

void sl_h_add_partitions_to_txn(sl_req *rq) {
    sl_add_partitions_to_txn_req req = *(const sl_add_partitions_to_txn_req *)rq->req;
    if (rq->h.api_version >= 4) return add_partitions_batched(rq, &req);
    sl_add_partitions_to_txn_resp resp;
    sl_add_partitions_to_txn_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req.topics, req.topics_count, partitions_count, resp.results,
                        resp.results_count, results, results_count))
        return sl_req_fail(rq, "out of memory");
    int32_t total = 0;
    for (int32_t i = 0; i < req.topics_count; i++) total += req.topics[i].partitions_count;
    sl_txn_tp *tps = sl_arena_calloc(rq->a, (size_t)(total ? total : 1), sizeof *tps);
    if (!tps) return sl_req_fail(rq, "out of memory");
    /* Kafka: refused partitions carry their own error, the rest OPERATION_NOT_ATTEMPTED. */
    int16_t all = 0;
    bool refused = false;
    if (!sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req.transactional_id))
        all = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    else if (!rq->b->txn)
        all = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    int32_t k = 0;
    for (int32_t i = 0; i < req.topics_count; i++) {
        sl_add_partitions_to_txn_resp_result *o = &resp.results[i];
        o->name = req.topics[i].name;
        bool ok = sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, req.topics[i].name);
        sl_topic *t = ok ? sl_topics_find(rq->b->topics, req.topics[i].name) : NULL;
        for (int32_t j = 0; j < req.topics[i].partitions_count; j++) {
            int32_t part = req.topics[i].partitions[j];
            o->results[j].partition_index = part;
            int16_t e = !ok                                    ? SL_KAFKA_TOPIC_AUTHORIZATION_FAILED
                        : (!t || part < 0 || part >= t->npart) ? SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION
                                                               : 0;
            o->results[j].error_code = e;
            refused |= e != 0;
            tps[k++] = (sl_txn_tp){req.topics[i].name, part};
        }
    }
    if (!all && !refused)
        all =
            fenced_for(sl_txn_add_partitions(rq->b->txn->txn, req.transactional_id, req.producer_id,
                                             req.producer_epoch, tps, (size_t)total, sl_wall_ms()),
                       rq->h.api_version, 2);
    for (int32_t i = 0; i < resp.results_count; i++)
        for (int32_t j = 0; j < resp.results[i].results_count; j++) {
            int16_t *e = &resp.results[i].results[j].error_code;
            if (all)
                *e = all;
            else if (refused && !*e)
                *e = SL_KAFKA_OPERATION_NOT_ATTEMPTED;
        }
    SL_RESPOND(rq, add_partitions_to_txn, &resp);
}

void sl_h_add_offsets_to_txn(sl_req *rq) {
    sl_add_offsets_to_txn_req req = *(const sl_add_offsets_to_txn_req *)rq->req;
    sl_add_offsets_to_txn_resp resp;
    sl_add_offsets_to_txn_resp_init(&resp);
    if (!sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req.transactional_id))
        resp.error_code = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    else if (!sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_GROUP, req.group_id))
        resp.error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    else if (!rq->b->txn)
        resp.error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    else if (!(resp.error_code = sl_groups_check_group(&rq->b->coordinator, req.group_id)))
        resp.error_code =
            fenced_for(sl_txn_add_offsets(rq->b->txn->txn, req.transactional_id, req.producer_id,
                                          req.producer_epoch, req.group_id, sl_wall_ms()),
                       rq->h.api_version, 2);
    SL_RESPOND(rq, add_offsets_to_txn, &resp);
}

/* A commit finishing its decision: the offsets go to their groups first (async, durable), then
 * the markers and Complete*, then the EndTxn answer (rq), or nothing more for a decision found
 * pending at start (rq NULL: the context and its arena `a` are owned and freed here). */
typedef struct end_ctx {
    sl_req *rq;
    sl_arena *a; /* rq's, or owned */
    sl_txn_coord *tc;
    sl_txn_jobs jobs; /* one job, owned */
    int waiting;      /* group commits, then markers, not yet durable */
    int16_t err;
    sl_err mark_err; /* a marker that could not be written or synced */
    const char *why; /* the log line (rq NULL) */
} end_ctx;

/* Answers (or, for a decision finished at start, logs) the job with `code`. */
static void end_complete(end_ctx *c, int16_t code) {
    sl_end_txn_resp resp;
    sl_end_txn_resp_init(&resp);
    resp.error_code = code;
    if (!code) { /* v5: the pair to use next; Sluice bumps no epoch here */
        resp.producer_id = c->jobs.v[0].pid;
        resp.producer_epoch = c->jobs.v[0].epoch;
    }
    if (!resp.error_code)
        SL_INFO(SUB, c->rq ? "transaction ended" : c->why,
                "transactional_id=%s producer_id=%lld outcome=%s", c->jobs.v[0].tid,
                (long long)c->jobs.v[0].pid,
                c->jobs.v[0].state == SL_TXN_PREPARE_COMMIT ? "commit" : "abort");
    sl_txn_jobs_free(&c->jobs);
    c->tc->inflight--;
    if (!c->rq) {
        sl_arena *a = c->a;
        free(c);
        sl_arena_free(a);
        return;
    }
    SL_RESPOND(c->rq, end_txn, &resp);
}

/* Every marker's sync came back: complete the transaction, or leave the decision pending for
 * the timer (which retries the markers; an appended one is only synced again). */
static void markers_done(end_ctx *c) {
    const sl_txn_rec *j = &c->jobs.v[0];
    int16_t code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    if (!c->mark_err) {
        code = sl_txn_complete(c->tc->txn, (sl_str){j->tid, j->tid_len}, j->pid, j->epoch,
                               sl_wall_ms());
        if (code) {
            SL_WARN(SUB, "cannot complete a transaction; will retry",
                    "transactional_id=%s error=%d", j->tid, code);
            code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        } else {
            drop_pending(c->tc, j->pid);
            (void)save_pending(c->tc, j->pid); /* nothing left: removes the file */
        }
    }
    end_complete(c, code);
}

/* One partition's marker, from its append to its sync's completion. */
typedef struct mark_wait {
    end_ctx *c;
    sl_partition *p; /* kept valid by a hold on its topic */
} mark_wait;

static void marker_synced(void *ctx, sl_err result) {
    mark_wait *m = ctx;
    end_ctx *c = m->c;
    sl_err e = m->p->log ? sl_txnpart_markers_synced(m->p, result) : SL_OK; /* deleted: moot */
    if (e) c->mark_err = e;
    sl_topic_release(m->p->topic);
    if (--c->waiting == 0) markers_done(c);
}

/* The markers of an EndTxn: appended on the loop, made durable by the flusher (one fsync per
 * partition, off the loop and side by side, where a serial sync per partition would stall every
 * connection), completed in marker_synced (run by the flusher from the loop; inline only when it
 * cannot queue a request, which the held count above makes safe). */
static void end_finish(end_ctx *c) {
    const sl_txn_rec *j = &c->jobs.v[0];
    sl_broker *b = c->tc->b;
    bool commit = j->state == SL_TXN_PREPARE_COMMIT;
    c->waiting = 1; /* held until every marker is started */
    c->mark_err = SL_OK;
    for (int32_t i = 0; i < j->ntopics && !c->mark_err; i++) {
        const sl_txn_topic *t = &j->topics[i];
        for (int32_t k = 0; k < t->nparts && !c->mark_err; k++) {
            sl_partition *p = sl_topics_partition(b->topics, sl_str_c(t->name), t->parts[k]);
            if (!p) continue; /* deleted since: nothing left to mark */
            mark_wait *m = sl_arena_alloc(c->a, sizeof *m);
            sl_err e = !m               ? SL_ENOMEM
                       : p->unavailable ? SL_EIO
                                        : sl_txnpart_append_marker(p, j->pid, j->epoch, commit, 0);
            if (e) {
                sl_logf(sl_txnpart_failing(p) ? SL_LOG_DEBUG : SL_LOG_WARN, SUB,
                        "cannot write a transaction marker; will retry",
                        "transactional_id=%s topic=%s partition=%d error=%s", j->tid, t->name,
                        t->parts[k], sl_strerror(e));
                c->mark_err = e;
                break;
            }
            *m = (mark_wait){.c = c, .p = p};
            sl_topic_hold(p->topic);
            c->waiting++;
            sl_flusher_request(b->flusher, p->log, marker_synced, m);
        }
    }
    if (--c->waiting == 0) markers_done(c);
}

static void end_group_done(void *ctx, int16_t err) {
    end_ctx *c = ctx;
    if (err) {
        SL_WARN(SUB, "committing a transaction's offsets failed", "transactional_id=%s error=%d",
                c->jobs.v[0].tid, err);
        c->err = err;
    }
    if (--c->waiting == 0) end_finish(c);
}

/* Commits the pending offsets of job `j` (a commit) to each of its groups. */
static void apply_offsets(end_ctx *c) {
    sl_txn_coord *tc = c->tc;
    const sl_txn_rec *j = &c->jobs.v[0];
    sl_arena *a = c->a;
    c->waiting = 1; /* held until every group is started */
    for (int32_t g = 0; g < j->ngroups; g++) {
        int32_t n = 0;
        for (pend_off *p = tc->pend; p; p = p->next)
            if (p->pid == j->pid && !strcmp(p->group, j->groups[g])) n++;
        if (!n) continue;
        sl_group_offset *o = sl_arena_calloc(a, (size_t)n, sizeof *o);
        if (!o) {
            c->err = SL_KAFKA_UNKNOWN_SERVER_ERROR;
            continue;
        }
        int32_t k = 0;
        /* Copied into the arena: the pending entries are dropped when the job completes. */
        for (pend_off *p = tc->pend; p; p = p->next) {
            if (p->pid != j->pid || strcmp(p->group, j->groups[g])) continue;
            sl_str topic = sl_str_c(p->topic), meta = SL_STR_NULL;
            char *tcopy = sl_arena_alloc(a, (size_t)topic.len + 1);
            char *mcopy = p->meta ? sl_arena_alloc(a, (size_t)p->meta_len + 1) : NULL;
            if (!tcopy || (p->meta && !mcopy)) continue;
            memcpy(tcopy, p->topic, (size_t)topic.len + 1);
            if (p->meta) {
                memcpy(mcopy, p->meta, (size_t)p->meta_len + 1);
                meta = (sl_str){mcopy, p->meta_len};
            }
            o[k++] = (sl_group_offset){.topic = {tcopy, topic.len},
                                       .partition = p->partition,
                                       .offset = p->offset,
                                       .leader_epoch = p->leader_epoch,
                                       .metadata = meta};
        }
        size_t glen = strlen(j->groups[g]);
        char *gcopy = sl_arena_alloc(a, glen + 1);
        if (!gcopy) continue;
        memcpy(gcopy, j->groups[g], glen + 1);
        /* The group may not exist (yet, or any more: after a restart, a group with no members
         * and nothing committed): created as for a simple commit; a group with members
         * answers an error here that does not concern the transaction's commit. */
        (void)sl_groups_commit_check(&tc->b->coordinator, (sl_str){gcopy, (int32_t)glen}, -1,
                                     sl_str_c(""), SL_STR_NULL);
        c->waiting++;
        if (sl_groups_commit(&tc->b->coordinator, (sl_str){gcopy, (int32_t)glen}, o, k, a,
                             end_group_done, c)) {
            c->waiting--;
            c->err = SL_KAFKA_UNKNOWN_SERVER_ERROR;
        }
    }
    if (--c->waiting == 0) end_finish(c);
}

/* A commit decided before the restart whose offsets were saved: applied, then finished. False
 * when it could not be started (the caller finishes the job without them). */
static bool finish_commit_async(sl_txn_coord *tc, const sl_txn_rec *j, const char *why) {
    end_ctx *c = calloc(1, sizeof *c);
    sl_arena *a = sl_arena_new(4096);
    if (!c || !a || !(c->jobs.v = calloc(1, sizeof *c->jobs.v)) ||
        sl_txn_rec_copy(&c->jobs.v[0], j)) {
        if (c) free(c->jobs.v);
        free(c);
        sl_arena_free(a);
        return false;
    }
    c->jobs.n = 1;
    c->why = why;
    c->a = a;
    c->tc = tc;
    tc->inflight++;
    apply_offsets(c);
    return true;
}

void sl_h_end_txn(sl_req *rq) {
    sl_end_txn_req req = *(const sl_end_txn_req *)rq->req;
    sl_end_txn_resp resp;
    sl_end_txn_resp_init(&resp);
    sl_txn_jobs jobs = {0};
    if (!sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req.transactional_id))
        resp.error_code = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    else if (!rq->b->txn)
        resp.error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    else
        resp.error_code =
            fenced_for(sl_txn_end(rq->b->txn->txn, req.transactional_id, req.producer_id,
                                  req.producer_epoch, req.committed, sl_wall_ms(), &jobs),
                       rq->h.api_version, 2);
    if (resp.error_code || !jobs.n) {
        sl_txn_jobs_free(&jobs);
        if (!resp.error_code) {
            resp.producer_id = req.producer_id;
            resp.producer_epoch = req.producer_epoch;
        }
        SL_RESPOND(rq, end_txn, &resp);
        return;
    }
    end_ctx *c = sl_arena_calloc(rq->a, 1, sizeof *c);
    if (!c) {
        /* The decision is durable; the timer finishes it. */
        sl_txn_jobs_free(&jobs);
        return sl_req_fail(rq, "out of memory");
    }
    *c = (end_ctx){.rq = rq, .a = rq->a, .tc = rq->b->txn, .jobs = jobs};
    c->tc->inflight++;
    if (jobs.v[0].state == SL_TXN_PREPARE_COMMIT)
        apply_offsets(c);
    else
        end_finish(c);
}

void sl_h_txn_offset_commit(sl_req *rq) {
    sl_txn_offset_commit_req req = *(const sl_txn_offset_commit_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_txn_offset_commit_resp resp;
    sl_txn_offset_commit_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req.topics, req.topics_count, partitions_count, resp.topics,
                        resp.topics_count, partitions, partitions_count))
        return sl_req_fail(rq, "out of memory");
    sl_txn_coord *tc = rq->b->txn;
    int16_t all = 0;
    bool stored = false;
    if (!sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req.transactional_id))
        all = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    else if (!sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_GROUP, req.group_id))
        all = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    else if (!tc)
        all = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    else if (!(all = fenced_for(sl_txn_check_offsets(tc->txn, req.transactional_id, req.producer_id,
                                                     req.producer_epoch, req.group_id),
                                v, 3))) {
        /* Kafka checks the member only when the request names one (v3+ with a generation);
         * otherwise the group is created for the commit if it does not exist. */
        bool member = v >= 3 && (req.generation_id >= 0 || req.member_id.len > 0 ||
                                 req.group_instance_id.len >= 0);
        all = sl_groups_check_group(&rq->b->coordinator, req.group_id);
        if (!all && member)
            all = sl_groups_commit_check(&rq->b->coordinator, req.group_id, req.generation_id,
                                         req.member_id, req.group_instance_id);
        else if (!all)
            (void)sl_groups_commit_check(&rq->b->coordinator, req.group_id, -1, sl_str_c(""),
                                         SL_STR_NULL);
    }
    for (int32_t i = 0; i < req.topics_count; i++) {
        sl_txn_offset_commit_req_topic *t = &req.topics[i];
        sl_txn_offset_commit_resp_topic *o = &resp.topics[i];
        o->name = t->name;
        bool ok = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, t->name);
        sl_topic *tp = sl_topics_find(rq->b->topics, t->name);
        for (int32_t j = 0; j < t->partitions_count; j++) {
            sl_txn_offset_commit_req_partition *p = &t->partitions[j];
            int16_t e = all;
            o->partitions[j].partition_index = p->partition_index;
            if (!e && !ok) e = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            if (!e && (!tp || p->partition_index < 0 || p->partition_index >= tp->npart))
                e = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            if (!e && p->committed_metadata.len > OFF_META_MAX)
                e = SL_KAFKA_OFFSET_METADATA_TOO_LARGE;
            if (!e && put_pending(tc, req.producer_id, req.group_id, t->name, p->partition_index,
                                  p->committed_offset, v >= 2 ? p->committed_leader_epoch : -1,
                                  p->committed_metadata))
                e = SL_KAFKA_UNKNOWN_SERVER_ERROR;
            o->partitions[j].error_code = e;
            stored |= e == 0;
        }
    }
    /* Durable before the answer: a commit decided later finds them even after a crash. */
    if (stored && save_pending(tc, req.producer_id)) {
        SL_WARN(SUB, "cannot save a transaction's offsets", "transactional_id=%.*s",
                req.transactional_id.len, req.transactional_id.p);
        for (int32_t i = 0; i < resp.topics_count; i++)
            for (int32_t j = 0; j < resp.topics[i].partitions_count; j++)
                if (!resp.topics[i].partitions[j].error_code)
                    resp.topics[i].partitions[j].error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    }
    SL_RESPOND(rq, txn_offset_commit, &resp);
}

void sl_h_describe_transactions(sl_req *rq) {
    sl_describe_transactions_req req = *(const sl_describe_transactions_req *)rq->req;
    sl_describe_transactions_resp resp;
    sl_describe_transactions_resp_init(&resp);
    if (!SL_RESP_ARRAY(rq, resp.transaction_states, resp.transaction_states_count,
                       req.transactional_ids_count))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < resp.transaction_states_count; i++) {
        sl_describe_transactions_resp_state *o = &resp.transaction_states[i];
        sl_describe_transactions_resp_state_init(o);
        sl_str id = req.transactional_ids[i];
        o->transactional_id = id;
        o->transaction_state = sl_str_c("");
        o->producer_id = -1;
        o->producer_epoch = -1;
        o->transaction_start_time_ms = -1;
        const sl_txn_rec *r = NULL;
        if (!sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID, id))
            o->error_code = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        else if (!rq->b->txn)
            o->error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        else
            o->error_code = sl_txn_describe(rq->b->txn->txn, id, &r);
        if (o->error_code || !r) continue;
        o->transaction_state = sl_str_c(sl_txn_state_name(r->state));
        o->transaction_timeout_ms = r->timeout_ms;
        o->transaction_start_time_ms = r->state == SL_TXN_EMPTY ? -1 : r->start_ms;
        o->producer_id = r->pid;
        o->producer_epoch = r->epoch;
        /* The record is borrowed: everything the answer keeps is copied into the arena. */
        char *st = sl_arena_alloc(rq->a, o->transaction_state.len + 1);
        if (!st || !SL_RESP_ARRAY(rq, o->topics, o->topics_count, r->ntopics))
            return sl_req_fail(rq, "out of memory");
        memcpy(st, o->transaction_state.p, (size_t)o->transaction_state.len + 1);
        o->transaction_state.p = st;
        for (int32_t t = 0; t < r->ntopics; t++) {
            size_t n = strlen(r->topics[t].name);
            char *name = sl_arena_alloc(rq->a, n + 1);
            if (!name || !SL_RESP_ARRAY(rq, o->topics[t].partitions, o->topics[t].partitions_count,
                                        r->topics[t].nparts))
                return sl_req_fail(rq, "out of memory");
            memcpy(name, r->topics[t].name, n + 1);
            o->topics[t].topic = (sl_str){name, (int32_t)n};
            memcpy(o->topics[t].partitions, r->topics[t].parts,
                   (size_t)r->topics[t].nparts * sizeof(int32_t));
        }
    }
    SL_RESPOND(rq, describe_transactions, &resp);
}

typedef struct list_ctx {
    sl_req *rq;
    const sl_list_transactions_req *req;
    int64_t now;
    sl_list_transactions_resp *resp;
    int32_t cap;
    bool counting, oom;
} list_ctx;

static void list_one(void *arg, const sl_txn_rec *r) {
    list_ctx *c = arg;
    const sl_list_transactions_req *q = c->req;
    sl_str id = {r->tid, r->tid_len};
    if (c->oom || !sl_req_allowed(c->rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID, id))
        return;
    if (q->state_filters_count > 0) {
        bool m = false;
        for (int32_t i = 0; i < q->state_filters_count && !m; i++)
            m = sl_txn_state_parse(q->state_filters[i]) == r->state;
        if (!m) return;
    }
    if (q->producer_id_filters_count > 0) {
        bool m = false;
        for (int32_t i = 0; i < q->producer_id_filters_count && !m; i++)
            m = q->producer_id_filters[i] == r->pid;
        if (!m) return;
    }
    /* Kafka: only transactions running longer than the filter (Ongoing or being ended). */
    if (q->duration_filter >= 0 &&
        (r->state == SL_TXN_EMPTY || r->state == SL_TXN_COMPLETE_COMMIT ||
         r->state == SL_TXN_COMPLETE_ABORT || c->now - r->start_ms <= q->duration_filter))
        return;
    if (c->counting) {
        c->cap++;
        return;
    }
    if (c->resp->transaction_states_count >= c->cap) return;
    char *name = sl_arena_alloc(c->rq->a, (size_t)id.len + 1);
    if (!name) {
        c->oom = true;
        return;
    }
    memcpy(name, r->tid, (size_t)id.len + 1);
    sl_list_transactions_resp_state *o =
        &c->resp->transaction_states[c->resp->transaction_states_count++];
    o->transactional_id = (sl_str){name, id.len};
    o->producer_id = r->pid;
    o->transaction_state = sl_str_c(sl_txn_state_name(r->state)); /* static */
}

void sl_h_list_transactions(sl_req *rq) {
    sl_list_transactions_req req = *(const sl_list_transactions_req *)rq->req;
    if (rq->h.api_version < 1) req.duration_filter = -1;
    sl_list_transactions_resp resp;
    sl_list_transactions_resp_init(&resp);
    int32_t unknown = 0;
    for (int32_t i = 0; i < req.state_filters_count; i++)
        unknown += sl_txn_state_parse(req.state_filters[i]) < 0;
    if (!SL_RESP_ARRAY(rq, resp.unknown_state_filters, resp.unknown_state_filters_count, unknown))
        return sl_req_fail(rq, "out of memory");
    resp.unknown_state_filters_count = 0;
    for (int32_t i = 0; i < req.state_filters_count; i++)
        if (sl_txn_state_parse(req.state_filters[i]) < 0)
            resp.unknown_state_filters[resp.unknown_state_filters_count++] = req.state_filters[i];
    if (!rq->b->txn) {
        resp.error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        SL_RESPOND(rq, list_transactions, &resp);
        return;
    }
    list_ctx c = {rq, &req, sl_wall_ms(), &resp, 0, true, false};
    sl_txn_foreach(rq->b->txn->txn, list_one, &c);
    if (!SL_RESP_ARRAY(rq, resp.transaction_states, resp.transaction_states_count, c.cap))
        return sl_req_fail(rq, "out of memory");
    resp.transaction_states_count = 0;
    c.counting = false;
    sl_txn_foreach(rq->b->txn->txn, list_one, &c);
    if (c.oom) return sl_req_fail(rq, "out of memory");
    SL_RESPOND(rq, list_transactions, &resp);
}
