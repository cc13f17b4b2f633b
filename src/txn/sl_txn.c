/* The transaction coordinator's state machine; see sl_txn.h. The rules follow Kafka's
 * TransactionCoordinator and TransactionMetadata (KIP-98, KIP-360, KIP-588) so that clients see
 * the same answers; the comments name where Sluice differs. */
#include "txn/sl_txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_logging.h"

#define SUB "txn"
/* Kafka's isProducerEpochExhausted: one epoch stays spare so a fence can always bump. */
#define EPOCH_EXHAUSTED (INT16_MAX - 1)

typedef struct ent {
    sl_txn_rec r;
    struct ent *next;
} ent;

struct sl_txn {
    sl_txn_config cfg;
    sl_txnlog *log;
    ent **tab;
    size_t cap, n;
};

/* ---- the id table (chained hash) ---- */

static uint64_t hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static ent *find(const sl_txn *c, const char *p, size_t n) {
    if (!c->cap) return NULL;
    for (ent *e = c->tab[hash(p, n) & (c->cap - 1)]; e; e = e->next)
        if (e->r.tid_len == n && !memcmp(e->r.tid, p, n)) return e;
    return NULL;
}

static sl_err insert(sl_txn *c, ent *e) {
    if (c->n + 1 > c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        ent **nt = calloc(nc, sizeof *nt);
        if (!nt) return SL_ENOMEM;
        for (size_t i = 0; i < c->cap; i++)
            for (ent *x = c->tab[i], *nx; x; x = nx) {
                nx = x->next;
                size_t b = hash(x->r.tid, x->r.tid_len) & (nc - 1);
                x->next = nt[b];
                nt[b] = x;
            }
        free(c->tab);
        c->tab = nt;
        c->cap = nc;
    }
    size_t b = hash(e->r.tid, e->r.tid_len) & (c->cap - 1);
    e->next = c->tab[b];
    c->tab[b] = e;
    c->n++;
    return SL_OK;
}

static void remove_ent(sl_txn *c, ent *e) {
    for (ent **pp = &c->tab[hash(e->r.tid, e->r.tid_len) & (c->cap - 1)]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            c->n--;
            sl_txn_rec_free(&e->r);
            free(e);
            return;
        }
}

/* ---- replay ---- */

static sl_err replay_one(void *ctx, const sl_txn_rec *r) {
    sl_txn *c = ctx;
    ent *e = find(c, r->tid, r->tid_len);
    if (r->state == SL_TXN_DEAD) {
        if (e) remove_ent(c, e);
        return SL_OK;
    }
    sl_txn_rec copy;
    sl_err err = sl_txn_rec_copy(&copy, r);
    if (err) return err;
    if (e) {
        sl_txn_rec_free(&e->r);
        e->r = copy;
        return SL_OK;
    }
    if (!(e = calloc(1, sizeof *e))) {
        sl_txn_rec_free(&copy);
        return SL_ENOMEM;
    }
    e->r = copy;
    if ((err = insert(c, e))) {
        sl_txn_rec_free(&e->r);
        free(e);
    }
    return err;
}

sl_err sl_txn_open(const char *dir, const sl_txn_config *cfg, sl_txn **out, char *err,
                   size_t elen) {
    *out = NULL;
    if (!cfg->alloc_pid) {
        snprintf(err, elen, "transaction coordinator: no producer-id allocator");
        return SL_EINVAL;
    }
    sl_txn *c = calloc(1, sizeof *c);
    if (!c) return SL_ENOMEM;
    c->cfg = *cfg;
    if (c->cfg.max_timeout_ms <= 0) c->cfg.max_timeout_ms = 900000;
    if (c->cfg.id_expiration_ms <= 0) c->cfg.id_expiration_ms = 604800000;
    if (c->cfg.rewrite_min_records <= 0) c->cfg.rewrite_min_records = 1000;
    sl_err e = sl_txnlog_open(dir, replay_one, c, &c->log, err, elen);
    if (e) {
        sl_txn_close(c);
        return e;
    }
    size_t pending = 0, ongoing = 0;
    for (size_t i = 0; i < c->cap; i++)
        for (ent *x = c->tab[i]; x; x = x->next) {
            pending += x->r.state == SL_TXN_PREPARE_COMMIT || x->r.state == SL_TXN_PREPARE_ABORT;
            ongoing += x->r.state == SL_TXN_ONGOING;
        }
    if (c->n)
        SL_INFO(SUB, "transaction log replayed", "file=%s ids=%zu ongoing=%zu markers_pending=%zu",
                sl_txnlog_path(c->log), c->n, ongoing, pending);
    *out = c;
    return SL_OK;
}

void sl_txn_close(sl_txn *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++)
        for (ent *x = c->tab[i], *nx; x; x = nx) {
            nx = x->next;
            sl_txn_rec_free(&x->r);
            free(x);
        }
    free(c->tab);
    sl_txnlog_close(c->log);
    free(c);
}

/* ---- helpers ---- */

void sl_txn_jobs_free(sl_txn_jobs *j) {
    if (!j) return;
    for (size_t i = 0; i < j->n; i++) sl_txn_rec_free(&j->v[i]);
    free(j->v);
    j->v = NULL;
    j->n = 0;
}

/* Adds a copy of `r` to `j`. Out of memory the job is only missing from `j`: the decision is
 * durable and sl_txn_pending still lists it. */
static void job_add(sl_txn_jobs *j, const sl_txn_rec *r) {
    sl_txn_rec *nv = realloc(j->v, (j->n + 1) * sizeof *nv);
    if (!nv) return;
    j->v = nv;
    if (sl_txn_rec_copy(&j->v[j->n], r) == SL_OK) j->n++;
}

static bool valid_name(sl_str s, size_t max) {
    return s.len >= 1 && (size_t)s.len <= max && !memchr(s.p, 0, (size_t)s.len);
}

static int16_t lookup(sl_txn *c, sl_str tid, ent **out) {
    *out = NULL;
    if (!valid_name(tid, SL_TXN_ID_MAX)) return SL_KAFKA_INVALID_REQUEST;
    *out = find(c, tid.p, (size_t)tid.len);
    return SL_KAFKA_NONE;
}

/* The producer checks of AddPartitions, AddOffsets, EndTxn, in Kafka's order. The epoch must be
 * equal: an older one is a zombie, a newer one was never handed out. */
static int16_t check_producer(const ent *e, int64_t pid, int16_t epoch) {
    if (!e || e->r.pid != pid) return SL_KAFKA_INVALID_PRODUCER_ID_MAPPING;
    if (e->r.epoch != epoch) return SL_KAFKA_PRODUCER_FENCED;
    return SL_KAFKA_NONE;
}

static bool preparing(const sl_txn_rec *r) {
    return r->state == SL_TXN_PREPARE_COMMIT || r->state == SL_TXN_PREPARE_ABORT;
}

static void clear_parts(sl_txn_rec *r) {
    for (int32_t i = 0; i < r->ntopics; i++) {
        free(r->topics[i].name);
        free(r->topics[i].parts);
    }
    free(r->topics);
    for (int32_t i = 0; i < r->ngroups; i++) free(r->groups[i]);
    free(r->groups);
    r->topics = NULL;
    r->groups = NULL;
    r->ntopics = r->ngroups = r->nparts_total = 0;
}

static void maybe_rewrite(sl_txn *c) {
    int64_t recs = sl_txnlog_records(c->log);
    if (recs >= c->cfg.rewrite_min_records && recs >= 2 * (int64_t)c->n) (void)sl_txn_rewrite(c);
}

/* Makes `next` (owned, consumed) the state of `e`, durable first. Every transition records the
 * previous producer id as the last one, as Kafka's prepareTransitionTo does. */
static int16_t apply(sl_txn *c, ent *e, sl_txn_rec *next) {
    next->last_pid = e->r.pid;
    sl_err err = sl_txnlog_append(c->log, next);
    if (err) {
        sl_txn_rec_free(next);
        return err == SL_EINVAL ? SL_KAFKA_UNKNOWN_SERVER_ERROR
                                : SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    }
    sl_txn_rec_free(&e->r);
    e->r = *next;
    maybe_rewrite(c);
    return SL_KAFKA_NONE;
}

/* Fences the producer (epoch + 1, unless at the very last epoch) and writes PrepareAbort: the
 * timeout and the InitProducerId-while-Ongoing paths (Kafka's prepareFenceProducerEpoch, then
 * the abort in one record). */
static int16_t fence_abort(sl_txn *c, ent *e, int64_t now_ms, sl_txn_jobs *jobs) {
    sl_txn_rec next;
    if (sl_txn_rec_copy(&next, &e->r)) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    if (next.epoch < INT16_MAX) next.epoch++;
    next.last_epoch = -1;
    next.state = SL_TXN_PREPARE_ABORT;
    next.update_ms = now_ms;
    int16_t k = apply(c, e, &next);
    if (!k) job_add(jobs, &e->r);
    return k;
}

/* ---- partition sets ---- */

typedef struct tpk {
    const char *p;
    size_t n;
    int32_t part;
} tpk;

static int name_cmp(const char *a, size_t an, const char *b, size_t bn) {
    int d = memcmp(a, b, an < bn ? an : bn);
    return d ? d : (an > bn) - (an < bn);
}

static int tpk_cmp(const void *x, const void *y) {
    const tpk *a = x, *b = y;
    int d = name_cmp(a->p, a->n, b->p, b->n);
    return d ? d : (a->part > b->part) - (a->part < b->part);
}

static const sl_txn_topic *find_topic(const sl_txn_rec *r, sl_str t) {
    int32_t lo = 0, hi = r->ntopics;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        const char *nm = r->topics[mid].name;
        int d = name_cmp(nm, strlen(nm), t.p, (size_t)t.len);
        if (!d) return &r->topics[mid];
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool has_tp(const sl_txn_rec *r, sl_str t, int32_t part) {
    const sl_txn_topic *tp = find_topic(r, t);
    if (!tp) return false;
    int32_t lo = 0, hi = tp->nparts;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (tp->parts[mid] == part) return true;
        if (tp->parts[mid] < part)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static int16_t check_tps(const sl_txn_tp *tps, size_t n) {
    if (n > SL_TXN_PARTITIONS_MAX) return SL_KAFKA_INVALID_REQUEST;
    for (size_t i = 0; i < n; i++) {
        if (!valid_name(tps[i].topic, SL_TXN_TOPIC_MAX)) return SL_KAFKA_INVALID_TOPIC_EXCEPTION;
        if (tps[i].partition < 0) return SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    }
    return SL_KAFKA_NONE;
}

/* Replaces r's partition set with its union with tps[n] (checked by check_tps). More than
 * SL_TXN_PARTITIONS_MAX partitions in one transaction is a Sluice limit: INVALID_REQUEST. */
static int16_t merge_tps(sl_txn_rec *r, const sl_txn_tp *tps, size_t n) {
    size_t total = (size_t)r->nparts_total + n;
    tpk *v = malloc((total ? total : 1) * sizeof *v);
    if (!v) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    size_t k = 0;
    for (int32_t i = 0; i < r->ntopics; i++)
        for (int32_t j = 0; j < r->topics[i].nparts; j++)
            v[k++] = (tpk){r->topics[i].name, strlen(r->topics[i].name), r->topics[i].parts[j]};
    for (size_t i = 0; i < n; i++)
        v[k++] = (tpk){tps[i].topic.p, (size_t)tps[i].topic.len, tps[i].partition};
    qsort(v, k, sizeof *v, tpk_cmp);
    size_t u = 0, nt = 0;
    for (size_t i = 0; i < k; i++) {
        if (u && !tpk_cmp(&v[u - 1], &v[i])) continue;
        if (!u || name_cmp(v[u - 1].p, v[u - 1].n, v[i].p, v[i].n)) nt++;
        v[u++] = v[i];
    }
    if (u > SL_TXN_PARTITIONS_MAX) {
        free(v);
        return SL_KAFKA_INVALID_REQUEST;
    }
    sl_txn_topic *ts = calloc(nt ? nt : 1, sizeof *ts);
    int16_t ret = ts ? SL_KAFKA_NONE : SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    size_t ti = 0;
    for (size_t i = 0; !ret && i < u;) {
        size_t j = i;
        while (j < u && !name_cmp(v[i].p, v[i].n, v[j].p, v[j].n)) j++;
        sl_txn_topic *t = &ts[ti++];
        t->name = malloc(v[i].n + 1);
        t->parts = malloc((j - i) * sizeof *t->parts);
        if (!t->name || !t->parts) {
            ret = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
            break;
        }
        memcpy(t->name, v[i].p, v[i].n);
        t->name[v[i].n] = 0;
        for (size_t q = i; q < j; q++) t->parts[q - i] = v[q].part;
        t->nparts = (int32_t)(j - i);
        i = j;
    }
    free(v); /* after the copies: some names pointed into r's old topics */
    if (ret) {
        for (size_t i = 0; ts && i < ti; i++) {
            free(ts[i].name);
            free(ts[i].parts);
        }
        free(ts);
        return ret;
    }
    char **groups = r->groups;
    int32_t ngroups = r->ngroups;
    r->groups = NULL;
    r->ngroups = 0;
    clear_parts(r);
    r->groups = groups;
    r->ngroups = ngroups;
    r->topics = ts;
    r->ntopics = (int32_t)nt;
    r->nparts_total = (int32_t)u;
    return SL_KAFKA_NONE;
}

static int group_pos(const sl_txn_rec *r, sl_str g, bool *found) {
    int32_t lo = 0, hi = r->ngroups;
    *found = false;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int d = name_cmp(r->groups[mid], strlen(r->groups[mid]), g.p, (size_t)g.len);
        if (!d) {
            *found = true;
            return mid;
        }
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- requests ---- */

int16_t sl_txn_init_producer_id(sl_txn *c, sl_str tid, int32_t timeout_ms, int64_t expected_pid,
                                int16_t expected_epoch, int64_t now_ms, int64_t *pid,
                                int16_t *epoch, sl_txn_jobs *abort_job) {
    memset(abort_job, 0, sizeof *abort_job);
    *pid = -1;
    *epoch = -1;
    ent *e;
    int16_t k = lookup(c, tid, &e);
    if (k) return k;
    bool has_exp = expected_pid != -1;
    if (has_exp != (expected_epoch != -1) || expected_pid < -1 || expected_epoch < -1)
        return SL_KAFKA_INVALID_REQUEST;
    if (timeout_ms <= 0 || timeout_ms > c->cfg.max_timeout_ms)
        return SL_KAFKA_INVALID_TRANSACTION_TIMEOUT;
    if (sl_txnlog_failed(c->log)) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    bool fresh = !e;
    if (fresh) {
        /* Kafka's new metadata: a fresh producer id at "no epoch"; only the transition below is
         * written. */
        int64_t np;
        if (c->cfg.alloc_pid(c->cfg.alloc_ctx, &np) || np < 0)
            return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        if (!(e = calloc(1, sizeof *e))) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        e->r = (sl_txn_rec){.tid = malloc((size_t)tid.len + 1),
                            .tid_len = (uint16_t)tid.len,
                            .state = SL_TXN_EMPTY,
                            .epoch = -1,
                            .last_epoch = -1,
                            .pid = np,
                            .last_pid = -1,
                            .timeout_ms = timeout_ms,
                            .start_ms = -1,
                            .update_ms = now_ms};
        if (e->r.tid) {
            memcpy(e->r.tid, tid.p, (size_t)tid.len);
            e->r.tid[tid.len] = 0;
        }
        if (!e->r.tid || insert(c, e)) {
            free(e->r.tid);
            free(e);
            return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        }
    }
    const sl_txn_rec *r = &e->r;
    /* Kafka's isValidProducerId: a producer that gives its pair must hold this id, or the one
     * just rotated away from (a retry whose answer was lost). */
    if (has_exp && !(r->epoch == -1 || expected_pid == r->pid ||
                     (expected_pid == r->last_pid && expected_epoch >= EPOCH_EXHAUSTED)))
        return SL_KAFKA_PRODUCER_FENCED;
    switch (r->state) {
    case SL_TXN_PREPARE_COMMIT:
    case SL_TXN_PREPARE_ABORT:
        return SL_KAFKA_CONCURRENT_TRANSACTIONS;
    case SL_TXN_ONGOING:
        /* The epoch this fence writes is never returned: the client retries, the next init
         * bumps again (or rotates the id when the fence exhausted the epochs). */
        k = fence_abort(c, e, now_ms, abort_job);
        return k ? k : SL_KAFKA_CONCURRENT_TRANSACTIONS;
    default:
        break;
    }
    sl_txn_rec next;
    if (sl_txn_rec_copy(&next, r)) {
        if (fresh) remove_ent(c, e);
        return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    }
    clear_parts(&next);
    if (r->epoch >= EPOCH_EXHAUSTED && (!has_exp || expected_epoch == r->epoch)) {
        int64_t np;
        if (c->cfg.alloc_pid(c->cfg.alloc_ctx, &np) || np < 0) {
            sl_txn_rec_free(&next);
            return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        }
        next.pid = np;
        next.epoch = 0;
        next.last_epoch = has_exp ? r->epoch : -1;
    } else if (!has_exp) {
        next.epoch = (int16_t)(r->epoch + 1);
        next.last_epoch = -1;
    } else if (r->epoch == -1 || expected_epoch == r->epoch) {
        next.epoch = (int16_t)(r->epoch + 1);
        next.last_epoch = r->epoch;
    } else if (expected_epoch == r->last_epoch) {
        /* A retry of a bump that succeeded: the same pair again. */
    } else {
        sl_txn_rec_free(&next);
        return SL_KAFKA_PRODUCER_FENCED;
    }
    next.state = SL_TXN_EMPTY;
    next.timeout_ms = timeout_ms;
    next.start_ms = -1;
    next.update_ms = now_ms;
    k = apply(c, e, &next);
    if (k) {
        if (fresh) remove_ent(c, e);
        return k;
    }
    *pid = e->r.pid;
    *epoch = e->r.epoch;
    return SL_KAFKA_NONE;
}

int16_t sl_txn_add_partitions(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch,
                              const sl_txn_tp *tps, size_t n, int64_t now_ms) {
    ent *e;
    int16_t k = lookup(c, tid, &e);
    if (!k) k = check_producer(e, pid, epoch);
    if (k) return k;
    if (preparing(&e->r)) return SL_KAFKA_CONCURRENT_TRANSACTIONS;
    if ((k = check_tps(tps, n))) return k;
    if (e->r.state == SL_TXN_ONGOING) {
        size_t i = 0;
        while (i < n && has_tp(&e->r, tps[i].topic, tps[i].partition)) i++;
        if (i == n) return SL_KAFKA_NONE;
    }
    sl_txn_rec next;
    if (sl_txn_rec_copy(&next, &e->r)) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    if ((k = merge_tps(&next, tps, n))) {
        sl_txn_rec_free(&next);
        return k;
    }
    if (next.state != SL_TXN_ONGOING) next.start_ms = now_ms;
    next.state = SL_TXN_ONGOING;
    next.update_ms = now_ms;
    return apply(c, e, &next);
}

int16_t sl_txn_verify_partitions(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch,
                                 const sl_txn_tp *tps, size_t n) {
    ent *e;
    int16_t k = lookup(c, tid, &e);
    if (!k) k = check_producer(e, pid, epoch);
    if (k) return k;
    if (e->r.state != SL_TXN_ONGOING) return SL_KAFKA_INVALID_TXN_STATE;
    for (size_t i = 0; i < n; i++)
        if (tps[i].topic.len < 0 || !has_tp(&e->r, tps[i].topic, tps[i].partition))
            return SL_KAFKA_INVALID_TXN_STATE;
    return SL_KAFKA_NONE;
}

int16_t sl_txn_add_offsets(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch, sl_str group,
                           int64_t now_ms) {
    ent *e;
    int16_t k = lookup(c, tid, &e);
    if (!k) k = check_producer(e, pid, epoch);
    if (k) return k;
    if (preparing(&e->r)) return SL_KAFKA_CONCURRENT_TRANSACTIONS;
    if (!valid_name(group, SL_TXN_GROUP_MAX)) return SL_KAFKA_INVALID_GROUP_ID;
    bool found;
    int at = group_pos(&e->r, group, &found);
    if (found && e->r.state == SL_TXN_ONGOING) return SL_KAFKA_NONE;
    if (!found && e->r.ngroups >= SL_TXN_GROUPS_MAX) return SL_KAFKA_INVALID_REQUEST;
    sl_txn_rec next;
    if (sl_txn_rec_copy(&next, &e->r)) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    if (!found) {
        char **ng = realloc(next.groups, (size_t)(next.ngroups + 1) * sizeof *ng);
        char *g = malloc((size_t)group.len + 1);
        if (ng) next.groups = ng;
        if (!ng || !g) {
            free(g);
            sl_txn_rec_free(&next);
            return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        }
        memcpy(g, group.p, (size_t)group.len);
        g[group.len] = 0;
        memmove(ng + at + 1, ng + at, (size_t)(next.ngroups - at) * sizeof *ng);
        ng[at] = g;
        next.ngroups++;
    }
    if (next.state != SL_TXN_ONGOING) next.start_ms = now_ms;
    next.state = SL_TXN_ONGOING;
    next.update_ms = now_ms;
    return apply(c, e, &next);
}

int16_t sl_txn_check_offsets(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch, sl_str group) {
    ent *e;
    int16_t k = lookup(c, tid, &e);
    if (!k) k = check_producer(e, pid, epoch);
    if (k) return k;
    bool found = false;
    if (valid_name(group, SL_TXN_GROUP_MAX)) (void)group_pos(&e->r, group, &found);
    return e->r.state == SL_TXN_ONGOING && found ? SL_KAFKA_NONE : SL_KAFKA_INVALID_TXN_STATE;
}

int16_t sl_txn_end(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch, bool commit, int64_t now_ms,
                   sl_txn_jobs *jobs) {
    memset(jobs, 0, sizeof *jobs);
    ent *e;
    int16_t k = lookup(c, tid, &e);
    if (!k) k = check_producer(e, pid, epoch);
    if (k) return k;
    switch (e->r.state) {
    case SL_TXN_ONGOING: {
        sl_txn_rec next;
        if (sl_txn_rec_copy(&next, &e->r)) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        next.state = commit ? SL_TXN_PREPARE_COMMIT : SL_TXN_PREPARE_ABORT;
        next.update_ms = now_ms;
        if ((k = apply(c, e, &next))) return k;
        job_add(jobs, &e->r);
        return SL_KAFKA_NONE;
    }
    case SL_TXN_COMPLETE_COMMIT:
        return commit ? SL_KAFKA_NONE : SL_KAFKA_INVALID_TXN_STATE;
    case SL_TXN_COMPLETE_ABORT:
        return commit ? SL_KAFKA_INVALID_TXN_STATE : SL_KAFKA_NONE;
    case SL_TXN_PREPARE_COMMIT:
        return commit ? SL_KAFKA_CONCURRENT_TRANSACTIONS : SL_KAFKA_INVALID_TXN_STATE;
    case SL_TXN_PREPARE_ABORT:
        return commit ? SL_KAFKA_INVALID_TXN_STATE : SL_KAFKA_CONCURRENT_TRANSACTIONS;
    default: /* Empty: nothing to end */
        return SL_KAFKA_INVALID_TXN_STATE;
    }
}

int16_t sl_txn_complete(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch, int64_t now_ms) {
    ent *e;
    int16_t k = lookup(c, tid, &e);
    if (k) return k;
    if (!e || e->r.pid != pid || e->r.epoch != epoch) return SL_KAFKA_INVALID_TXN_STATE;
    if (e->r.state == SL_TXN_COMPLETE_COMMIT || e->r.state == SL_TXN_COMPLETE_ABORT)
        return SL_KAFKA_NONE;
    if (!preparing(&e->r)) return SL_KAFKA_INVALID_TXN_STATE;
    sl_txn_rec next;
    if (sl_txn_rec_copy(&next, &e->r)) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    clear_parts(&next);
    next.state =
        e->r.state == SL_TXN_PREPARE_COMMIT ? SL_TXN_COMPLETE_COMMIT : SL_TXN_COMPLETE_ABORT;
    next.update_ms = now_ms;
    return apply(c, e, &next);
}

/* ---- timers ---- */

static bool timed_out(const sl_txn_rec *r, int64_t now_ms) {
    /* start_ms >= -1 (sl_txn_rec_valid): no overflow for any sane clock. */
    return r->state == SL_TXN_ONGOING && now_ms - r->start_ms > r->timeout_ms;
}

static bool id_expired(const sl_txn *c, const sl_txn_rec *r, int64_t now_ms) {
    return (r->state == SL_TXN_EMPTY || r->state == SL_TXN_COMPLETE_COMMIT ||
            r->state == SL_TXN_COMPLETE_ABORT) &&
           r->update_ms <= now_ms - c->cfg.id_expiration_ms;
}

sl_err sl_txn_expire(sl_txn *c, int64_t now_ms, sl_txn_jobs *aborts) {
    memset(aborts, 0, sizeof *aborts);
    /* Collected first: a Dead id leaves the table. */
    ent **due = NULL;
    size_t nd = 0, cap = 0;
    for (size_t i = 0; i < c->cap; i++)
        for (ent *x = c->tab[i]; x; x = x->next) {
            if (!timed_out(&x->r, now_ms) && !id_expired(c, &x->r, now_ms)) continue;
            if (nd == cap) {
                cap = cap ? cap * 2 : 16;
                ent **nd2 = realloc(due, cap * sizeof *nd2);
                if (!nd2) {
                    free(due);
                    return SL_ENOMEM;
                }
                due = nd2;
            }
            due[nd++] = x;
        }
    sl_err err = SL_OK;
    for (size_t i = 0; !err && i < nd; i++) {
        ent *x = due[i];
        if (timed_out(&x->r, now_ms)) {
            SL_INFO(SUB, "aborting a timed-out transaction",
                    "producer_id=%lld epoch=%d timeout_ms=%d partitions=%d", (long long)x->r.pid,
                    (int)x->r.epoch, (int)x->r.timeout_ms, (int)x->r.nparts_total);
            if (fence_abort(c, x, now_ms, aborts)) err = SL_EIO;
            continue;
        }
        sl_txn_rec dead;
        if (sl_txn_rec_copy(&dead, &x->r)) {
            err = SL_ENOMEM;
            break;
        }
        clear_parts(&dead);
        dead.state = SL_TXN_DEAD;
        dead.update_ms = now_ms;
        dead.last_pid = x->r.pid;
        err = sl_txnlog_append(c->log, &dead);
        sl_txn_rec_free(&dead);
        if (!err) remove_ent(c, x);
    }
    free(due);
    if (!err && nd) maybe_rewrite(c);
    return err;
}

sl_err sl_txn_pending(sl_txn *c, sl_txn_jobs *out) {
    memset(out, 0, sizeof *out);
    size_t want = 0;
    for (size_t i = 0; i < c->cap; i++)
        for (ent *x = c->tab[i]; x; x = x->next)
            if (preparing(&x->r)) {
                want++;
                job_add(out, &x->r);
            }
    if (out->n == want) return SL_OK;
    sl_txn_jobs_free(out);
    return SL_ENOMEM;
}

/* ---- reading ---- */

int16_t sl_txn_describe(sl_txn *c, sl_str tid, const sl_txn_rec **out) {
    *out = NULL;
    ent *e;
    if (lookup(c, tid, &e) || !e) return SL_KAFKA_TRANSACTIONAL_ID_NOT_FOUND;
    *out = &e->r;
    return SL_KAFKA_NONE;
}

void sl_txn_foreach(sl_txn *c, void (*fn)(void *ctx, const sl_txn_rec *r), void *ctx) {
    for (size_t i = 0; i < c->cap; i++)
        for (ent *x = c->tab[i]; x; x = x->next) fn(ctx, &x->r);
}

size_t sl_txn_count(const sl_txn *c) { return c->n; }

int64_t sl_txn_max_pid(const sl_txn *c) {
    int64_t m = -1;
    for (size_t i = 0; i < c->cap; i++)
        for (const ent *x = c->tab[i]; x; x = x->next) {
            if (x->r.pid > m) m = x->r.pid;
            if (x->r.last_pid > m) m = x->r.last_pid;
        }
    return m;
}

static const char *const k_names[SL_TXN_NSTATES] = {
    "Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead",
};

const char *sl_txn_state_name(int state) {
    return state >= 0 && state < SL_TXN_NSTATES ? k_names[state] : "Unknown";
}

int sl_txn_state_parse(sl_str name) {
    for (int i = 0; i < SL_TXN_NSTATES; i++)
        if (sl_str_eqc(name, k_names[i])) return i;
    return -1;
}

sl_err sl_txn_rewrite(sl_txn *c) {
    const sl_txn_rec **v = malloc((c->n ? c->n : 1) * sizeof *v);
    if (!v) return SL_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < c->cap; i++)
        for (ent *x = c->tab[i]; x; x = x->next) v[k++] = &x->r;
    sl_err e = sl_txnlog_rewrite(c->log, v, k);
    free(v);
    return e;
}

sl_txnlog *sl_txn_log(sl_txn *c) { return c->log; }
