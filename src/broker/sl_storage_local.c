/* The local broker's storage backend (pipeline/sl_backend.h): topics and partitions from the
 * registry (sl_topics.h), records in partition logs (storage/sl_log.h) made durable by the
 * group-commit flusher, retries recognised by the idempotent-producer state (sl_producers.h),
 * and the "appended" event delivered to the fetches parked on a partition.
 *
 * Handles are the registry's own structs (sl_topic, sl_partition) behind the opaque types; a
 * subscription holds its partition's topic (sl_topic_hold), so a deleted topic stays allocated
 * while a parked fetch points at it. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_fprot.h"
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "pipeline/sl_backend.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"

static sl_topic *T(sl_stopic *t) { return (sl_topic *)t; }
static sl_partition *P(sl_spart *p) { return (sl_partition *)p; }

static sl_stopic *local_topic(void *ctx, sl_str name, const sl_uuid *id) {
    sl_broker *b = ctx;
    return (sl_stopic *)(id ? sl_topics_find_id(b->topics, id) : sl_topics_find(b->topics, name));
}

static sl_spart *local_partition(void *ctx, sl_stopic *th, int32_t index) {
    sl_topic *t = T(th);
    return index >= 0 && index < t->npart ? (sl_spart *)t->parts[index] : NULL;
}

static void local_info(void *ctx, sl_spart *ph, sl_spart_info *out) {
    sl_broker *b = ctx;
    sl_partition *p = P(ph);
    out->topic = p->topic->name;
    out->index = p->index;
    out->max_message_bytes = sl_tcfg_value(b->topics, p->topic, SL_TCFG_MAX_MESSAGE_BYTES);
    /* Field protection's chain covers every partition, topics created later included: its
     * transforms look the topic up in the policy current when they run. */
    out->xform = p->xform ? p->xform : sl_fprot_chain(b->fprot);
}

/* ---- stored data that fails authentication, keys that are not there ----
 * A partition whose batch fails its tag, or whose key is unavailable or destroyed, answers
 * KAFKA_STORAGE_ERROR (retriable) for itself only; a consumer retrying the same offset would
 * repeat the report every few milliseconds, so it is limited per partition. */
#define KEY_REPORT_WINDOW_MS 60000

static bool key_error(sl_err e) {
    return e == SL_ETAMPER || e == SL_EKEY_UNAVAILABLE || e == SL_EKEY_DESTROYED ||
           e == SL_EKMS_UNAVAILABLE || e == SL_EKMS_DENIED;
}

void sl_storage_local_report_key_error(sl_broker *b, sl_partition *p, sl_err e, const char *what) {
    int64_t now = sl_mono_ms();
    bool tamper = e == SL_ETAMPER;
    int64_t *next = tamper ? &p->tamper_next_ms : &p->keywarn_next_ms;
    uint64_t *heldp = tamper ? &p->tamper_held : &p->keywarn_held;
    if (*next && now < *next) {
        (*heldp)++;
        return;
    }
    uint64_t held = *heldp;
    *heldp = 0;
    *next = now + KEY_REPORT_WINDOW_MS;
    if (!tamper) {
        SL_WARN("encryption", "partition key not usable; answering KAFKA_STORAGE_ERROR",
                "topic=%s partition=%d during=%s err=%s (%s) repeats_held_back=%" PRIu64,
                p->topic->name, p->index, what, sl_errname(e), sl_strerror(e), held);
        return;
    }
    SL_WARN("encryption",
            "stored data failed authentication (modified, or copied from another partition or "
            "topic); answering KAFKA_STORAGE_ERROR for this partition",
            "topic=%s partition=%d during=%s repeats_held_back=%" PRIu64, p->topic->name, p->index,
            what, held);
    char detail[160];
    snprintf(detail, sizeof detail,
             "stored data failed authentication during %s; reports held back since the last "
             "one: %" PRIu64,
             what, held);
    sl_events_emit(&b->events, &(sl_event){.kind = SL_EV_KEY,
                                           .key = {.op = "tamper",
                                                   .provider = b->cfg.sluice_kms_provider,
                                                   .topic = p->topic->name,
                                                   .partition = p->index,
                                                   .reason = what,
                                                   .success = false,
                                                   .detail = detail}});
}

/* A partition that could not be opened answers KAFKA_STORAGE_ERROR whatever the reason (Kafka's
 * answer for a replica on a failed log directory; retriable). */
static int16_t unavailable(const sl_partition *p) {
    return p->unavailable || !p->log ? SL_KAFKA_KAFKA_STORAGE_ERROR : 0;
}

static void local_offsets(void *ctx, sl_spart *ph, sl_spart_offsets *out) {
    sl_log *log = P(ph)->log;
    if ((out->error = unavailable(P(ph))) != 0) {
        out->log_start = out->log_end = out->high_watermark = out->last_stable = -1;
        return;
    }
    out->log_start = sl_log_start_offset(log);
    out->log_end = sl_log_end_offset(log);
    /* One replica: everything appended is replicated, durable or not (as Kafka with acks=1). */
    out->high_watermark = out->log_end;
    out->last_stable = sl_txnpart_lso(P(ph));
}

static int local_aborted(void *ctx, sl_spart *ph, int64_t from, int64_t to, sl_arena *a,
                         sl_spart_aborted **out) {
    sl_txn_aborted *r = NULL;
    int n = sl_txnpart_aborted(P(ph), from, to, a, &r);
    *out = NULL;
    if (n <= 0) return n;
    sl_spart_aborted *o = sl_arena_alloc(a, (size_t)n * sizeof *o);
    if (!o) return -1;
    for (int i = 0; i < n; i++)
        o[i] =
            (sl_spart_aborted){.producer_id = r[i].producer_id, .first_offset = r[i].first_offset};
    *out = o;
    return n;
}

/* ---- the "appended" event ---- */

/* Tells every subscriber of `p` about `bytes` (negative: the partition is going away). A
 * subscriber may unsubscribe others (a fetch parked on several partitions of this one's topic
 * completes at once), so whenever the list changed during a call the walk starts over, skipping
 * those already told: each hears of an event once, and the walk is linear when nothing
 * changes. */
static void emit(sl_partition *p, int64_t bytes) {
    uint64_t ev = ++p->ticks;
    for (sl_waiter *w = p->waiters; w;) {
        if (w->seen == ev) {
            w = w->next;
            continue;
        }
        w->seen = ev;
        uint64_t before = p->ticks;
        sl_waiter *next = w->next;
        w->fn(w, bytes);
        w = p->ticks == before ? next : p->waiters;
    }
}

void sl_storage_local_notify(sl_partition *p, int64_t bytes) { emit(p, bytes); }

static void local_subscribe(void *ctx, sl_spart *ph, sl_waiter *w) {
    sl_partition *p = P(ph);
    sl_topic_hold(p->topic); /* a subscription keeps what it points at */
    w->part = ph;
    w->seen = p->ticks;
    w->prev = NULL;
    w->next = p->waiters;
    if (p->waiters) p->waiters->prev = w;
    p->waiters = w;
}

static void local_unsubscribe(void *ctx, sl_waiter *w) {
    sl_partition *p = P(w->part);
    if (w->prev)
        w->prev->next = w->next;
    else if (p->waiters == w)
        p->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->part = NULL;
    p->ticks++; /* an emit() in progress walks the changed list again */
    sl_topic_release(p->topic);
}

void sl_storage_local_close_topic(sl_broker *b, sl_topic *t) {
    for (int32_t i = 0; i < t->npart; i++) emit(t->parts[i], -1);
}

/* ---- append ---- */

typedef struct durable_ctx {
    sl_durable_fn fn;
    void *ctx;
} durable_ctx;

static void flushed(void *ctx, sl_err e) {
    durable_ctx *d = ctx;
    if (e) SL_ERROR("produce", "flush failed", "err=%s", sl_errname(e));
    d->fn(d->ctx, e ? SL_KAFKA_KAFKA_STORAGE_ERROR : 0);
}

/* Appends the set batch by batch; returns a Kafka error code. */
static int16_t append_set(sl_broker *b, sl_partition *p, uint8_t *data, size_t len,
                          sl_append_result *r) {
    while (len > 0) {
        sl_batch_info bi;
        if (!sl_batch_parse(data, len, &bi)) return SL_KAFKA_CORRUPT_MESSAGE;
        /* The leader epoch is outside the CRC; one epoch (0) everywhere on a single node. */
        memset(data + SL_BATCH_LEADER_EPOCH, 0, 4);
        int64_t base;
        sl_err e = sl_log_append(p->log, data, bi.size, bi.record_count, bi.max_timestamp, &base);
        if (e && key_error(e)) {
            /* No key to seal with now (KMS down, topic shredded): retriable, nothing written
             * in clear, the broker and the other partitions carry on. */
            sl_storage_local_report_key_error(b, p, e, "produce");
            return sl_err_to_kafka(e);
        }
        if (e) {
            SL_ERROR("produce", "append failed", "topic=%s partition=%d err=%s", p->topic->name,
                     p->index, sl_errname(e));
            return sl_err_to_kafka(e);
        }
        if (r->base_offset < 0) r->base_offset = base;
        r->records += bi.record_count;
        /* Only exhausted memory fails this; the batch is in the log either way, so the answer
         * stays success (a retry of it would then not be recognised, hence the error line). */
        if (sl_pstate_record(p->pstate, &bi, base, sl_wall_ms()))
            SL_ERROR("produce", "producer state not updated", "topic=%s partition=%d err=%s",
                     p->topic->name, p->index, sl_errname(SL_ENOMEM));
        /* A transactional data batch opens its producer's transaction here (LSO). */
        if ((bi.attributes & 0x30) == 0x10)
            sl_txnpart_on_append(p, bi.producer_id, bi.producer_epoch, base,
                                 base + bi.last_offset_delta);
        data += bi.size;
        len -= bi.size;
    }
    return SL_KAFKA_NONE;
}

/* ---- compaction's produce rules (docs/compaction.md) ----
 * Before anything is appended: a client batch with the delete-horizon flag (attributes bit 6,
 * which only the cleaner sets) is refused on every topic, and on a compacted topic a batch holding
 * a record without a key (Kafka: "Compacted topic cannot accept message without key"). A
 * compressed batch is decompressed for this one at a time into a scratch arena (at most
 * KEYCHECK_MAX_INFLATE), so a request of many batches does not accumulate their records. */
#define ATTR_DELETE_HORIZON  0x40
#define ATTR_CONTROL         0x20
#define KEYCHECK_MAX_INFLATE ((size_t)64 << 20)

static int16_t compaction_check(sl_broker *b, sl_partition *p, const uint8_t *data, size_t len) {
    bool compacted = sl_topic_compacted(b->topics, p->topic);
    sl_arena *scratch = NULL; /* one batch's decompressed records at a time */
    int16_t err = SL_KAFKA_NONE;
    while (len > 0 && !err) {
        sl_batch_info bi;
        if (!sl_batch_parse(data, len, &bi)) {
            err = SL_KAFKA_CORRUPT_MESSAGE;
            break;
        }
        if (bi.attributes & ATTR_DELETE_HORIZON) {
            err = SL_KAFKA_INVALID_RECORD;
            break;
        }
        if (compacted && !(bi.attributes & ATTR_CONTROL)) {
            if (!scratch && !(scratch = sl_arena_new(4096))) {
                err = SL_KAFKA_UNKNOWN_SERVER_ERROR;
                break;
            }
            sl_arena_reset(scratch);
            sl_rec_iter it;
            sl_record rec;
            if (sl_rec_iter_init(&it, data, bi.size, scratch, KEYCHECK_MAX_INFLATE)) {
                err = SL_KAFKA_CORRUPT_MESSAGE;
                break;
            }
            while (!err && sl_rec_iter_next(&it, &rec))
                if (rec.key.len < 0) err = SL_KAFKA_INVALID_RECORD;
            if (!err && sl_rec_iter_err(&it)) err = SL_KAFKA_CORRUPT_MESSAGE;
        }
        data += bi.size;
        len -= bi.size;
    }
    sl_arena_free(scratch);
    return err;
}

static int16_t local_append(void *ctx, sl_spart *ph, uint8_t *data, size_t len, sl_arena *a,
                            sl_append_result *r, sl_durable_fn durable, void *dctx) {
    sl_broker *b = ctx;
    sl_partition *p = P(ph);
    *r = (sl_append_result){.base_offset = -1, .log_start = -1};
    int16_t down = unavailable(p);
    if (down) return down;
    int16_t refused = compaction_check(b, p, data, len);
    if (refused) return refused;
    int64_t dup = -1;
    int16_t err = sl_pstate_check_set(p->pstate, data, len, &dup);
    if (err == 0 && dup >= 0) {
        r->base_offset = dup; /* Kafka answers a retry with the original offset */
        r->duplicate = true;
    } else if (err == 0) {
        err = append_set(b, p, data, len, r);
        if (r->base_offset >= 0) {
            emit(p, (int64_t)len);
            sl_pstate_after_append(p->pstate, p->log);
        }
    }
    r->log_start = sl_log_start_offset(p->log);
    if (err || !durable) return err;
    /* A duplicate waits for the same flush: its original may not be durable yet. */
    durable_ctx *d = sl_arena_alloc(a, sizeof *d);
    if (!d) {
        /* As the flusher does when it cannot queue a request: sync here, answer now. */
        sl_err e = sl_log_sync(p->log);
        if (e) SL_ERROR("produce", "flush failed", "err=%s", sl_errname(e));
        durable(dctx, e ? SL_KAFKA_KAFKA_STORAGE_ERROR : 0);
        return 0;
    }
    d->fn = durable;
    d->ctx = dctx;
    sl_flusher_request(b->flusher, p->log, flushed, d);
    return 0;
}

/* ---- reads and offsets ---- */

/* The offset after the set's last batch when every batch in it is empty (no records: what the
 * cleaner leaves for a run of removed batches); -1 otherwise. */
static int64_t after_empty_set(const uint8_t *d, size_t n) {
    int64_t next = -1;
    while (n > 0) {
        sl_batch_info bi;
        if (!sl_batch_parse(d, n, &bi) || bi.record_count != 0) return -1;
        next = bi.base_offset + bi.last_offset_delta + 1;
        d += bi.size;
        n -= bi.size;
    }
    return next;
}

/* A compacted segment may hold nothing but an empty batch, and reads stop at a segment's end: a
 * Fetch answered with only empty batches makes librdkafka grow its fetch size until it gives up
 * (MSG_SIZE_TOO_LARGE), and a legacy Fetch (v0-3) converts it to nothing. So the read continues
 * past them, until it holds a batch with records (at least one whole batch, as the first read)
 * or the log's end. Best effort: a failed continuation returns what was read. */
#define EMPTY_RUN_READS_MAX 4096

static void read_past_empty(sl_partition *p, int32_t max_bytes, sl_arena *a, uint8_t **data,
                            size_t *len) {
    int64_t next;
    for (int i = 0; i<EMPTY_RUN_READS_MAX && * len> 0 &&
                    (next = after_empty_set(*data, *len)) >= 0 && next < sl_log_end_offset(p->log);
         i++) {
        uint8_t *more = NULL;
        size_t mlen = 0;
        int64_t room = (int64_t)max_bytes - (int64_t)*len;
        if (sl_log_read(p->log, next, (int32_t)(room > 0 ? room : 1), a, &more, &mlen) || !mlen)
            return;
        uint8_t *joined = sl_arena_alloc(a, *len + mlen);
        if (!joined) return;
        memcpy(joined, *data, *len);
        memcpy(joined + *len, more, mlen);
        *data = joined;
        *len += mlen;
    }
}

static int16_t local_read(void *ctx, sl_spart *ph, int64_t offset, int32_t max_bytes, sl_arena *a,
                          uint8_t **data, size_t *len) {
    sl_partition *p = P(ph);
    int16_t down = unavailable(p);
    if (down) return down;
    sl_err e = sl_log_read(p->log, offset, max_bytes, a, data, len);
    if (e == SL_ERANGE) return SL_KAFKA_OFFSET_OUT_OF_RANGE;
    if (e && key_error(e)) {
        char what[64];
        snprintf(what, sizeof what, "fetch at offset %" PRId64, offset);
        sl_storage_local_report_key_error(ctx, p, e, what);
        return sl_err_to_kafka(e);
    }
    if (e) {
        SL_ERROR("fetch", "read failed", "topic=%s partition=%d err=%s", p->topic->name, p->index,
                 sl_errname(e));
        return sl_err_to_kafka(e);
    }
    read_past_empty(p, max_bytes, a, data, len);
    return 0;
}

static int16_t local_offset_for_time(void *ctx, sl_spart *ph, int64_t ts, int64_t *offset,
                                     int64_t *found_ts) {
    int16_t down = unavailable(P(ph));
    if (down) return down;
    sl_err e = sl_log_offset_for_time(P(ph)->log, ts, offset, found_ts);
    return e ? sl_err_to_kafka(e) : 0;
}

static int16_t local_max_timestamp(void *ctx, sl_spart *ph, int64_t *offset, int64_t *ts) {
    int16_t down = unavailable(P(ph));
    if (down) return down;
    sl_err e = sl_log_max_timestamp(P(ph)->log, offset, ts);
    return e ? sl_err_to_kafka(e) : 0;
}

static int16_t local_delete_records(void *ctx, sl_spart *ph, int64_t offset, int64_t *low) {
    sl_partition *p = P(ph);
    int16_t down = unavailable(p);
    if (down) return down;
    if (offset > sl_log_start_offset(p->log)) {
        sl_err e = sl_log_delete_records(p->log, offset);
        if (e) return sl_err_to_kafka(e);
        SL_INFO("admin", "records deleted", "topic=%s partition=%d start_offset=%lld",
                p->topic->name, p->index, (long long)sl_log_start_offset(p->log));
        sl_txnpart_log_start_moved(p);
    }
    *low = sl_log_start_offset(p->log);
    return 0;
}

static const sl_storage_ops k_local_ops = {
    .topic = local_topic,
    .partition = local_partition,
    .info = local_info,
    .offsets = local_offsets,
    .append = local_append,
    .read = local_read,
    .offset_for_time = local_offset_for_time,
    .max_timestamp = local_max_timestamp,
    .delete_records = local_delete_records,
    .subscribe = local_subscribe,
    .unsubscribe = local_unsubscribe,
    .aborted = local_aborted,
};

sl_storage sl_storage_local(sl_broker *b) { return (sl_storage){.ops = &k_local_ops, .ctx = b}; }
