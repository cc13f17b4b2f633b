/* The pure steps of the gateway's data path (sl_gw_data_int.h): strip, merge, transform. */
#include <string.h>

#include "base/sl_kerr.h"
#include "gateway/sl_gw_data_int.h"

#define NZ(n)  ((size_t)((n) > 0 ? (n) : 1))
#define CNT(n) ((n) > 0 ? (n) : 0)

/* ---- Produce ---- */

bool sl_gw_produce_plan_build(const sl_gw_env *e, const sl_produce_req *req, int16_t v,
                              int16_t all_err, sl_gw_produce_plan *pl) {
    memset(pl, 0, sizeof *pl);
    pl->fwd = *req;
    sl_produce_resp *m = &pl->mirror;
    sl_produce_resp_init(m);
    int32_t nt = CNT(req->topic_data_count);
    sl_produce_req_topic *ft = sl_arena_calloc(e->a, NZ(nt), sizeof *ft);
    if (!ft || !(m->responses = sl_arena_calloc(e->a, NZ(nt), sizeof *m->responses))) return false;
    m->responses_count = nt;
    int32_t fnt = 0;
    for (int32_t i = 0; i < nt; i++) {
        const sl_produce_req_topic *rt = &req->topic_data[i];
        sl_produce_resp_topic *ot = &m->responses[i];
        int32_t np = CNT(rt->partition_data_count);
        ot->name = rt->name;
        ot->partition_responses = sl_arena_calloc(e->a, NZ(np), sizeof *ot->partition_responses);
        sl_produce_req_partition *fp = sl_arena_calloc(e->a, NZ(np), sizeof *fp);
        if (!ot->partition_responses || !fp) return false;
        ot->partition_responses_count = np;
        bool ok = !all_err && e->allowed(e->ctx, rt->name);
        const sl_xform_chain *ch = ok && e->chain ? e->chain(e->ctx, rt->name) : NULL;
        int32_t fnp = 0;
        for (int32_t j = 0; j < np; j++) {
            const sl_produce_req_partition *rp = &rt->partition_data[j];
            sl_produce_resp_partition *o = &ot->partition_responses[j];
            sl_produce_resp_partition_init(o);
            o->index = rp->index;
            o->base_offset = -1; /* Kafka's "no offset"; the schema default is 0 */
            if (all_err) {
                o->error_code = all_err;
            } else if (!ok) {
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            } else if (rp->records.len <= 0 || !rp->records.p) {
                o->error_code = SL_KAFKA_INVALID_RECORD;
            } else {
                /* Validation, field protection, seal (sl_xform.h). The records are a view into
                 * the request frame in the arena: a transform that rewrites in place changes the
                 * frame itself; one that returns new bytes makes a re-encode necessary. */
                sl_bytes recs = rp->records;
                char why[256] = "";
                sl_xform_ctx xc = {.a = e->a,
                                   .api_version = v,
                                   .now_ms = e->now_ms,
                                   .max_bytes = e->max_bytes,
                                   .topic = rt->name,
                                   .partition = rp->index,
                                   .rq = e->rq,
                                   .why = why,
                                   .whylen = sizeof why,
                                   .crc_checked_downstream = true};
                o->error_code = sl_xform_produce(ch, &xc, &recs, NULL);
                if (!o->error_code) {
                    if (recs.p != rp->records.p || recs.len != rp->records.len) pl->rewrite = true;
                    fp[fnp].index = rp->index;
                    fp[fnp].records = recs;
                    fnp++;
                    pl->nfwd++;
                    continue;
                }
                if (why[0] && v >= 8) {
                    size_t wn = strnlen(why, sizeof why);
                    const char *wp = sl_arena_dup(e->a, why, wn);
                    if (wp) o->error_message = (sl_str){wp, (int32_t)wn};
                }
            }
            pl->nlocal++;
            pl->rewrite = true;
        }
        /* A topic with no partitions goes as it came (the upstream answers it). */
        if (fnp > 0 || np == 0) {
            ft[fnt] = *rt;
            ft[fnt].partition_data = np == 0 ? rt->partition_data : fp;
            ft[fnt].partition_data_count = np == 0 ? rt->partition_data_count : fnp;
            fnt++;
        }
    }
    pl->fwd.topic_data = ft;
    pl->fwd.topic_data_count = req->topic_data_count < 0 && fnt == 0 ? req->topic_data_count : fnt;
    return true;
}

/* The upstream's entry for (topic, partition): looked for at the hinted position first (the
 * upstream answers in the order it was asked, usually), then everywhere. */
static const sl_produce_resp_partition *produce_find(const sl_produce_resp *up, sl_str topic,
                                                     int32_t index, int32_t *ht, int32_t *hp) {
    int32_t nt = CNT(up->responses_count);
    for (int32_t k = 0; k < nt; k++) {
        int32_t ti = (*ht + k) % nt;
        const sl_produce_resp_topic *ut = &up->responses[ti];
        if (!sl_str_eq(ut->name, topic)) continue;
        int32_t np = CNT(ut->partition_responses_count);
        for (int32_t l = 0; l < np; l++) {
            int32_t pj = ((k == 0 ? *hp : 0) + l) % np;
            if (ut->partition_responses[pj].index != index) continue;
            *ht = ti;
            *hp = pj + 1 < np ? pj + 1 : 0;
            return &ut->partition_responses[pj];
        }
    }
    return NULL;
}

void sl_gw_produce_merge(sl_gw_produce_plan *pl, const sl_produce_resp *up) {
    sl_produce_resp *m = &pl->mirror;
    m->throttle_time_ms = up->throttle_time_ms;
    m->node_endpoints = up->node_endpoints;
    m->node_endpoints_count = up->node_endpoints_count;
    int32_t ht = 0, hp = 0;
    for (int32_t i = 0; i < m->responses_count; i++) {
        sl_produce_resp_topic *ot = &m->responses[i];
        for (int32_t j = 0; j < ot->partition_responses_count; j++) {
            sl_produce_resp_partition *o = &ot->partition_responses[j];
            if (o->error_code) continue; /* answered locally */
            const sl_produce_resp_partition *u = produce_find(up, ot->name, o->index, &ht, &hp);
            if (u) {
                *o = *u;
            } else {
                o->error_code = SL_KAFKA_UNKNOWN_SERVER_ERROR;
                o->error_message = sl_str_c("the upstream cluster did not answer this partition");
            }
        }
    }
}

/* ---- Fetch ---- */

bool sl_gw_fetch_plan_build(const sl_gw_env *e, const sl_fetch_req *req, int16_t v, int16_t all_err,
                            sl_gw_fetch_plan *pl) {
    memset(pl, 0, sizeof *pl);
    pl->fwd = *req;
    int32_t nt = CNT(req->topics_count);
    pl->local = sl_arena_calloc(e->a, NZ(nt), sizeof *pl->local);
    pl->names = sl_arena_calloc(e->a, NZ(nt), sizeof *pl->names);
    sl_fetch_req_topic *ft = sl_arena_calloc(e->a, NZ(nt), sizeof *ft);
    if (!pl->local || !pl->names || !ft) return false;
    int32_t fnt = 0;
    for (int32_t i = 0; i < nt; i++) {
        const sl_fetch_req_topic *rt = &req->topics[i];
        sl_str name = rt->topic;
        int16_t err = 0;
        /* By id (v13+) the name is the catalog's (the descriptor named the same one). */
        if (v >= 13 && !(e->topic_name && e->topic_name(e->ctx, &rt->topic_id, &name))) {
            name = (sl_str){"", 0};
            err = SL_KAFKA_UNKNOWN_TOPIC_ID;
        }
        if (all_err)
            err = all_err;
        else if (!err && !e->allowed(e->ctx, name))
            err = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
        pl->names[i] = name;
        pl->local[i] = err;
        if (err)
            pl->nlocal++;
        else
            ft[fnt++] = *rt;
    }
    if (pl->nlocal == 0) return true; /* forwarded as it came */
    pl->fwd.topics = ft;
    pl->fwd.topics_count = fnt;
    if (v >= 7 && (req->session_id != 0 || req->session_epoch != -1)) {
        pl->sessionless = true;
        pl->fwd.session_id = 0;
        pl->fwd.session_epoch = -1;
        pl->fwd.forgotten_topics_data = NULL;
        pl->fwd.forgotten_topics_data_count = 0;
    }
    return true;
}

/* A partition answered without data: Kafka's "nothing known" values (as sl_fetch.c's). */
static void fetch_part_error(sl_fetch_resp_partition *o, int32_t index, int16_t err) {
    sl_fetch_resp_partition_init(o);
    o->partition_index = index;
    o->error_code = err;
    o->high_watermark = -1;
    o->aborted_transactions_count = -1;
    /* Clients read a size even with an error (librdkafka rejects -1 before v12). */
    o->records = (sl_bytes){(const uint8_t *)"", 0};
}

static bool same_topic(int16_t v, const sl_fetch_resp_topic *ut, const sl_fetch_req_topic *rt) {
    return v >= 13 ? memcmp(ut->topic_id.b, rt->topic_id.b, sizeof ut->topic_id.b) == 0
                   : sl_str_eq(ut->topic, rt->topic);
}

/* The offset the request asked for (partition of a named topic), -1 when not named. */
static int64_t fetch_offset_of(const sl_fetch_req *req, int32_t rti, int32_t partition) {
    if (rti < 0) return -1;
    const sl_fetch_req_topic *rt = &req->topics[rti];
    for (int32_t j = 0; j < rt->partitions_count; j++)
        if (rt->partitions[j].partition == partition) return rt->partitions[j].fetch_offset;
    return -1;
}

/* Fails every partition of an answer topic that may not be served (records dropped). */
static void fail_topic(sl_fetch_resp_topic *ot, int16_t err) {
    for (int32_t j = 0; j < ot->partitions_count; j++)
        fetch_part_error(&ot->partitions[j], ot->partitions[j].partition_index, err);
}

bool sl_gw_fetch_merge(const sl_gw_env *e, const sl_fetch_req *req, int16_t v,
                       const sl_gw_fetch_plan *pl, const sl_fetch_resp *up, sl_fetch_resp *out,
                       bool *changed) {
    *changed = pl->nlocal > 0;
    sl_fetch_resp_init(out);
    if (up) *out = *up;
    int32_t nt = CNT(req->topics_count), nu = up ? CNT(up->responses_count) : 0;
    out->responses = sl_arena_calloc(e->a, NZ(nt + nu), sizeof *out->responses);
    bool *used = sl_arena_calloc(e->a, NZ(nu), sizeof *used);
    /* per answer topic: its name, and the request topic it answers (-1: a session's other) */
    sl_str *names = sl_arena_calloc(e->a, NZ(nt + nu), sizeof *names);
    int32_t *from = sl_arena_calloc(e->a, NZ(nt + nu), sizeof *from);
    if (!out->responses || !used || !names || !from) return false;
    int32_t n = 0;
    for (int32_t i = 0; i < nt; i++) {
        const sl_fetch_req_topic *rt = &req->topics[i];
        if (pl->local[i]) {
            sl_fetch_resp_topic *ot = &out->responses[n];
            int32_t np = CNT(rt->partitions_count);
            /* v13+: the name is not encoded; the outcomes read it */
            ot->topic = v >= 13 ? pl->names[i] : rt->topic;
            ot->topic_id = rt->topic_id;
            ot->partitions = sl_arena_calloc(e->a, NZ(np), sizeof *ot->partitions);
            if (!ot->partitions) return false;
            ot->partitions_count = np;
            for (int32_t j = 0; j < np; j++)
                fetch_part_error(&ot->partitions[j], rt->partitions[j].partition, pl->local[i]);
            names[n] = pl->names[i];
            from[n++] = -1 - i; /* local: not transformed, not asked about again */
            continue;
        }
        for (int32_t u = 0; u < nu; u++) {
            if (used[u] || !same_topic(v, &up->responses[u], rt)) continue;
            used[u] = true;
            if (u != n) *changed = true; /* moved */
            out->responses[n] = up->responses[u];
            names[n] = pl->names[i];
            from[n++] = i;
        }
    }
    /* The upstream's other topics: an incremental session's partitions the request did not list.
     * Their READ is decided now, on this request's principal. */
    int32_t first_extra = n, nextra = 0;
    for (int32_t u = 0; u < nu; u++) {
        if (used[u]) continue;
        if (u != n) *changed = true;
        sl_fetch_resp_topic *ot = &out->responses[n];
        *ot = up->responses[u];
        sl_str name = ot->topic;
        if (v >= 13 && !(e->topic_name && e->topic_name(e->ctx, &ot->topic_id, &name))) {
            fail_topic(ot, SL_KAFKA_UNKNOWN_TOPIC_ID);
            *changed = true;
            names[n] = (sl_str){"", 0};
            from[n++] = INT32_MIN; /* failed */
            continue;
        }
        names[n] = name;
        from[n++] = INT32_MAX; /* extra, to decide */
        nextra++;
    }
    out->responses_count = n;
    if (nextra > 0) {
        sl_str *en = sl_arena_calloc(e->a, (size_t)nextra, sizeof *en);
        bool *ok = sl_arena_calloc(e->a, (size_t)nextra, sizeof *ok);
        if (!en || !ok) return false;
        int32_t k = 0;
        for (int32_t t = first_extra; t < n; t++)
            if (from[t] == INT32_MAX) en[k++] = names[t];
        if (e->decide_extra) e->decide_extra(e->ctx, en, nextra, ok);
        k = 0;
        for (int32_t t = first_extra; t < n; t++) {
            if (from[t] != INT32_MAX) continue;
            if (ok[k++]) continue;
            fail_topic(&out->responses[t], SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
            from[t] = INT32_MIN;
            /* The upstream session holds partitions this principal may no longer read: drop it,
             * so the client's next fetch is a full one (planned sessionless). */
            out->session_id = 0;
            *changed = true;
        }
    }
    /* Record transforms (unseal, unprotect) on each set of a topic with a chain. */
    for (int32_t t = 0; t < n; t++) {
        if (from[t] < 0) continue; /* local or failed */
        sl_fetch_resp_topic *ot = &out->responses[t];
        if (v >= 13) ot->topic = names[t]; /* not encoded from v13; read by the outcomes */
        const sl_xform_chain *ch = e->chain ? e->chain(e->ctx, names[t]) : NULL;
        if (!ch) continue;
        int32_t rti = from[t] == INT32_MAX ? -1 : from[t];
        for (int32_t j = 0; j < ot->partitions_count; j++) {
            sl_fetch_resp_partition *o = &ot->partitions[j];
            if (o->error_code || o->records.len <= 0 || !o->records.p) continue;
            /* The answer's bytes are the upstream connection's buffer: transforms work on (and
             * may rewrite in place) an arena copy. */
            size_t len = (size_t)o->records.len;
            uint8_t *data = sl_arena_dup(e->a, o->records.p, len);
            if (!data) return false;
            bool rw = false;
            sl_xform_ctx xc = {.a = e->a,
                               .api_version = v,
                               .max_bytes = (int64_t)len,
                               .fetch_offset = fetch_offset_of(req, rti, o->partition_index),
                               .topic = names[t],
                               .partition = o->partition_index,
                               .rq = e->rq};
            int16_t err = sl_xform_fetch(ch, &xc, &data, &len, &rw);
            if (err) {
                fetch_part_error(o, o->partition_index, err);
                *changed = true;
                continue;
            }
            if (rw || len != (size_t)o->records.len) *changed = true;
            o->records = (sl_bytes){data, (int32_t)len};
        }
    }
    return true;
}

/* ---- ListOffsets, OffsetForLeaderEpoch, DeleteRecords ---- */

static void no_defaults(void *p) { (void)p; }
static void delete_records_defaults(void *p) {
    /* Kafka's "no low watermark"; the schema default is 0. */
    ((sl_delete_records_resp_partition *)p)->low_watermark = -1;
}

#define SL_GW_OFFSETS_DEF(api, TNAME, PIDX, DEFAULTS)                                              \
    bool sl_gw_##api##_plan(const sl_gw_env *e, const sl_##api##_req *req, int16_t all_err,        \
                            sl_##api##_req *fwd, sl_##api##_resp *mirror, int32_t *nlocal) {       \
        *fwd = *req;                                                                               \
        *nlocal = 0;                                                                               \
        sl_##api##_resp_init(mirror);                                                              \
        int32_t nt = CNT(req->topics_count), fnt = 0;                                              \
        mirror->topics = sl_arena_calloc(e->a, NZ(nt), sizeof *mirror->topics);                    \
        fwd->topics = sl_arena_calloc(e->a, NZ(nt), sizeof *fwd->topics);                          \
        if (!mirror->topics || !fwd->topics) return false;                                         \
        mirror->topics_count = nt;                                                                 \
        for (int32_t i = 0; i < nt; i++) {                                                         \
            const sl_##api##_req_topic *rt = &req->topics[i];                                      \
            __typeof__(mirror->topics) ot = &mirror->topics[i];                                    \
            int32_t np = CNT(rt->partitions_count);                                                \
            ot->TNAME = rt->TNAME;                                                                 \
            ot->partitions = sl_arena_calloc(e->a, NZ(np), sizeof *ot->partitions);                \
            if (!ot->partitions) return false;                                                     \
            ot->partitions_count = np;                                                             \
            int16_t err = all_err;                                                                 \
            if (!err && !e->allowed(e->ctx, rt->TNAME)) err = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED; \
            for (int32_t j = 0; j < np; j++) {                                                     \
                sl_##api##_resp_partition_init(&ot->partitions[j]);                                \
                ot->partitions[j].PIDX = rt->partitions[j].PIDX;                                   \
                DEFAULTS(&ot->partitions[j]);                                                      \
                ot->partitions[j].error_code = err;                                                \
            }                                                                                      \
            if (err)                                                                               \
                ++*nlocal;                                                                         \
            else                                                                                   \
                fwd->topics[fnt++] = *rt;                                                          \
        }                                                                                          \
        fwd->topics_count = *nlocal ? fnt : req->topics_count;                                     \
        if (!*nlocal) fwd->topics = req->topics;                                                   \
        return true;                                                                               \
    }                                                                                              \
    void sl_gw_##api##_merge(sl_##api##_resp *mirror, const sl_##api##_resp *up) {                 \
        mirror->throttle_time_ms = up->throttle_time_ms;                                           \
        int32_t nu = CNT(up->topics_count), ht = 0;                                                \
        for (int32_t i = 0; i < mirror->topics_count; i++) {                                       \
            __typeof__(mirror->topics) ot = &mirror->topics[i];                                    \
            for (int32_t j = 0; j < ot->partitions_count; j++) {                                   \
                __typeof__(ot->partitions) o = &ot->partitions[j];                                 \
                if (o->error_code) continue; /* answered locally */                                \
                const __typeof__(*o) *found = NULL;                                                \
                for (int32_t k = 0; k < nu && !found; k++) {                                       \
                    int32_t ti = (ht + k) % nu;                                                    \
                    const __typeof__(*up->topics) *ut = &up->topics[ti];                           \
                    if (!sl_str_eq(ut->TNAME, ot->TNAME)) continue;                                \
                    for (int32_t l = 0; l < ut->partitions_count; l++)                             \
                        if (ut->partitions[l].PIDX == o->PIDX) {                                   \
                            found = &ut->partitions[l];                                            \
                            ht = ti;                                                               \
                            break;                                                                 \
                        }                                                                          \
                }                                                                                  \
                if (found)                                                                         \
                    *o = *found;                                                                   \
                else                                                                               \
                    o->error_code = SL_KAFKA_UNKNOWN_SERVER_ERROR;                                 \
            }                                                                                      \
        }                                                                                          \
    }

SL_GW_OFFSETS_DEF(list_offsets, name, partition_index, no_defaults)
SL_GW_OFFSETS_DEF(offset_for_leader_epoch, topic, partition, no_defaults)
SL_GW_OFFSETS_DEF(delete_records, name, partition_index, delete_records_defaults)
