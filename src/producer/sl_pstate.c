/* Idempotent producer state, pure: sequence/epoch rules per (producer id, partition) and
 * expiry. Rules follow Kafka 3.x's ProducerStateManager/ProducerAppendInfo; docs/idempotence.md. */
#include "sl_pstate.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct pentry {
    sl_pstate_producer p;
    struct pentry *next;
} pentry;

struct sl_pstate {
    pentry **buckets;
    size_t nbuckets, count;
    int64_t max_pid;
    bool dirty; /* changed since the store last captured it (sl_pstate_mark_changed) */
    struct sl_pstore *store;
};

sl_pstate *sl_pstate_new(void) {
    sl_pstate *ps = calloc(1, sizeof *ps);
    if (!ps) return NULL;
    ps->nbuckets = 16;
    ps->buckets = calloc(ps->nbuckets, sizeof *ps->buckets);
    if (!ps->buckets) {
        free(ps);
        return NULL;
    }
    ps->max_pid = -1;
    return ps;
}

int32_t sl_seq_add(int32_t seq, int32_t delta) {
    if (seq > INT32_MAX - delta) return delta - (INT32_MAX - seq) - 1;
    return seq + delta;
}

static bool in_sequence(int32_t last, int32_t next) {
    return (int64_t)next == (int64_t)last + 1 || (next == 0 && last == INT32_MAX);
}

static size_t hash_pid(int64_t pid, size_t n) {
    uint64_t x = (uint64_t)pid * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 32) & (n - 1);
}

static pentry *find(const sl_pstate *ps, int64_t pid) {
    for (pentry *e = ps->buckets[hash_pid(pid, ps->nbuckets)]; e; e = e->next)
        if (e->p.pid == pid) return e;
    return NULL;
}

static sl_err grow(sl_pstate *ps) {
    size_t n = ps->nbuckets * 2;
    pentry **nb = calloc(n, sizeof *nb);
    if (!nb) return SL_ENOMEM;
    for (size_t i = 0; i < ps->nbuckets; i++)
        for (pentry *e = ps->buckets[i], *nx; e; e = nx) {
            nx = e->next;
            size_t h = hash_pid(e->p.pid, n);
            e->next = nb[h];
            nb[h] = e;
        }
    free(ps->buckets);
    ps->buckets = nb;
    ps->nbuckets = n;
    return SL_OK;
}

static pentry *find_or_add(sl_pstate *ps, int64_t pid) {
    pentry *e = find(ps, pid);
    if (e) return e;
    if (ps->count >= ps->nbuckets && grow(ps)) return NULL;
    e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->p.pid = pid;
    e->p.epoch = -1;
    size_t h = hash_pid(pid, ps->nbuckets);
    e->next = ps->buckets[h];
    ps->buckets[h] = e;
    ps->count++;
    if (pid > ps->max_pid) ps->max_pid = pid;
    return e;
}

static void entry_push(sl_pstate_producer *e, int16_t epoch, const sl_pstate_batch *b,
                       int64_t now_ms) {
    if (e->epoch != epoch) { /* a new epoch starts a new sequence space */
        e->epoch = epoch;
        e->n = 0;
    }
    if (e->n == SL_PSTATE_BATCHES) {
        memmove(&e->b[0], &e->b[1], (SL_PSTATE_BATCHES - 1) * sizeof e->b[0]);
        e->n--;
    }
    e->b[e->n++] = *b;
    e->last_ms = now_ms;
}

sl_err sl_pstate_record(sl_pstate *ps, const sl_batch_info *bi, int64_t base_offset,
                        int64_t now_ms) {
    /* A transaction marker (control batch) carries no sequence: it must not enter the
     * sequence history the next data batch is checked against. */
    if (bi->producer_id < 0 || (bi->attributes & 0x20)) return SL_OK;
    pentry *e = find_or_add(ps, bi->producer_id);
    if (!e) return SL_ENOMEM;
    sl_pstate_batch b = {.first_seq = bi->base_sequence,
                         .last_seq = sl_seq_add(bi->base_sequence, bi->last_offset_delta),
                         .base_offset = base_offset,
                         .last_offset_delta = bi->last_offset_delta};
    entry_push(&e->p, bi->producer_epoch, &b, now_ms);
    ps->dirty = true;
    return SL_OK;
}

/* What earlier batches of the same record set would have changed, for checking later ones. */
typedef struct pending_upd {
    int64_t pid;
    int16_t epoch;
    int32_t last_seq;
} pending_upd;

int16_t sl_pstate_check_set(const sl_pstate *ps, const uint8_t *data, size_t len,
                            int64_t *dup_base) {
    *dup_base = -1;
    pending_upd upd[8];
    int nupd = 0;
    while (len > 0) {
        sl_batch_info bi;
        if (!sl_batch_parse(data, len, &bi)) return SL_KAFKA_CORRUPT_MESSAGE;
        data += bi.size;
        len -= bi.size;
        if (bi.producer_id < 0) continue;
        if (bi.base_sequence < 0 || bi.producer_epoch < 0) return SL_KAFKA_INVALID_RECORD;
        int32_t last_seq = sl_seq_add(bi.base_sequence, bi.last_offset_delta);
        const pentry *ce = find(ps, bi.producer_id);
        const sl_pstate_producer *cur = ce ? &ce->p : NULL;
        if (cur && cur->epoch == bi.producer_epoch)
            for (int i = 0; i < cur->n; i++)
                if (cur->b[i].first_seq == bi.base_sequence && cur->b[i].last_seq == last_seq) {
                    *dup_base = cur->b[i].base_offset;
                    return SL_KAFKA_NONE;
                }
        pending_upd *u = NULL;
        for (int i = nupd - 1; i >= 0 && !u; i--)
            if (upd[i].pid == bi.producer_id) u = &upd[i];
        int16_t epoch = u ? u->epoch : cur ? cur->epoch : -1;
        if (epoch >= 0 && bi.producer_epoch < epoch) return SL_KAFKA_INVALID_PRODUCER_EPOCH;
        if (bi.producer_epoch != epoch) {
            /* A bumped epoch restarts at 0; a producer we know nothing of (new, expired, or
             * its batches removed by retention) may continue anywhere, as Kafka >= 2.5. */
            if (bi.base_sequence != 0 && epoch != -1) return SL_KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
        } else {
            int32_t prev = u ? u->last_seq : cur->b[cur->n - 1].last_seq;
            if (cur && !in_sequence(prev, bi.base_sequence))
                return SL_KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
        }
        if (!u) {
            /* More producers in one record set than this is hardly a produce request. */
            if (nupd == (int)(sizeof upd / sizeof upd[0])) return SL_KAFKA_INVALID_RECORD;
            u = &upd[nupd++];
            u->pid = bi.producer_id;
        }
        u->epoch = bi.producer_epoch;
        u->last_seq = last_seq;
    }
    return SL_KAFKA_NONE;
}

static void entry_remove(sl_pstate *ps, pentry **pp) {
    pentry *e = *pp;
    *pp = e->next;
    free(e);
    ps->count--;
}

int sl_pstate_expire(sl_pstate *ps, int64_t now_ms, int64_t expiration_ms) {
    int dropped = 0;
    for (size_t i = 0; i < ps->nbuckets; i++)
        for (pentry **pp = &ps->buckets[i]; *pp;) {
            if (now_ms - (*pp)->p.last_ms >= expiration_ms) {
                entry_remove(ps, pp);
                dropped++;
            } else {
                pp = &(*pp)->next;
            }
        }
    if (dropped) ps->dirty = true;
    return dropped;
}

void sl_pstate_foreach(const sl_pstate *ps, void (*fn)(void *ctx, const sl_pstate_producer *p),
                       void *ctx) {
    for (size_t i = 0; i < ps->nbuckets; i++)
        for (const pentry *e = ps->buckets[i]; e; e = e->next) fn(ctx, &e->p);
}

sl_err sl_pstate_restore(sl_pstate *ps, const sl_pstate_producer *p) {
    if (p->pid < 0 || p->epoch < 0 || p->n < 1 || p->n > SL_PSTATE_BATCHES || find(ps, p->pid))
        return SL_ECORRUPT;
    pentry *e = find_or_add(ps, p->pid);
    if (!e) return SL_ENOMEM;
    e->p = *p;
    return SL_OK;
}

void sl_pstate_clear(sl_pstate *ps) {
    for (size_t b = 0; b < ps->nbuckets; b++)
        while (ps->buckets[b]) entry_remove(ps, &ps->buckets[b]);
    ps->max_pid = -1;
}

void sl_pstate_free(sl_pstate *ps) {
    if (!ps) return;
    sl_pstate_clear(ps);
    free(ps->buckets);
    free(ps);
}

bool sl_pstate_changed(const sl_pstate *ps) { return ps->dirty; }
void sl_pstate_mark_changed(sl_pstate *ps, bool changed) { ps->dirty = changed; }
struct sl_pstore *sl_pstate_store(const sl_pstate *ps) {
    return ps->store;
}
void sl_pstate_set_store(sl_pstate *ps, struct sl_pstore *st) { ps->store = st; }

size_t sl_pstate_count(const sl_pstate *ps) { return ps->count; }
int64_t sl_pstate_max_pid(const sl_pstate *ps) { return ps->max_pid; }

bool sl_pstate_get(const sl_pstate *ps, int64_t pid, int16_t *epoch, int32_t *last_seq,
                   int *nbatches) {
    const pentry *e = find(ps, pid);
    if (!e) return false;
    if (epoch) *epoch = e->p.epoch;
    if (last_seq) *last_seq = e->p.n ? e->p.b[e->p.n - 1].last_seq : -1;
    if (nbatches) *nbatches = e->p.n;
    return true;
}
