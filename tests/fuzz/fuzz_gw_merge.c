/* libFuzzer target for the gateway's answer merges (src/gateway/sl_gw_handlers.h), which run
 * over whatever the upstream sends. Input: byte 0 picks the API (2 mod 4: DescribeTransactions
 * then ListTransactions; other even: Metadata; odd: DescribeGroups then ListGroups), byte 1 the
 * version, byte 2 flags; the rest is the upstream's answer body. The client's request is made from
 * the answer itself (its first entries, some by id on Metadata v10+, plus entries the answer
 * lacks). Names whose first byte is odd are denied. Invariants: nothing denied is listed as a
 * success, a listing shows no denied name, named requests are answered only for what they asked,
 * and the merged answer survives its own codec at the request's version. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_arena.h"
#include "gateway/sl_gw_handlers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int16_t deny_odd(void *ctx, sl_str name) { return name.len > 0 && (name.p[0] & 1) ? 29 : 0; }
static int32_t ops_len(void *ctx, sl_str name) { return name.len; }

static bool asked_md(const sl_metadata_req *q, const sl_metadata_resp_topic *t) {
    for (int32_t i = 0; i < q->topics_count; i++) {
        const sl_metadata_req_topic *r = &q->topics[i];
        if (r->name.len >= 0 ? sl_str_eq(r->name, t->name)
                             : !memcmp(r->topic_id.b, t->topic_id.b, sizeof t->topic_id.b))
            return true;
    }
    return false;
}

static void metadata(sl_arena *a, int16_t v, uint8_t flags, const uint8_t *p, size_t n) {
    sl_metadata_resp m;
    sl_metadata_resp_init(&m);
    sl_rd r = sl_rd_init(p, n);
    if (sl_metadata_resp_decode(&r, a, v, &m) != SL_OK) return;
    bool all = flags & 1, want_ops = flags & 2;
    sl_metadata_req q = {.topics_count = -1};
    int32_t nt = m.topics_count > 0 ? m.topics_count : 0;
    sl_gw_local_topic local[2] = {{sl_str_c("local-a"), {{0}}, 29},
                                  {sl_str_c("local-b"), {{0}}, 3}};
    if (!all) {
        /* Every other answer entry asked for (by id on v10+ when flag 4), and one it lacks. */
        q.topics = sl_arena_calloc(a, (size_t)nt + 1, sizeof *q.topics);
        if (!q.topics) return;
        q.topics_count = 0;
        for (int32_t i = 0; i < nt; i += 2) {
            sl_metadata_req_topic *t = &q.topics[q.topics_count++];
            bool by_id = v >= 10 && (flags & 4) && (i & 2);
            t->name = by_id ? SL_STR_NULL : m.topics[i].name;
            t->topic_id = m.topics[i].topic_id;
            if (!by_id && t->name.len < 0) q.topics_count--; /* a nameless entry: not askable */
        }
        q.topics[q.topics_count++].name = sl_str_c("absent");
    }
    sl_gw_authz az = {NULL, deny_odd, ops_len};
    if (!sl_gw_metadata_merge(a, &q, all, want_ops, all ? NULL : local, all ? 0 : 2, &az, &m))
        return;
    for (int32_t i = 0; i < m.topics_count; i++) {
        const sl_metadata_resp_topic *t = &m.topics[i];
        bool denied = deny_odd(NULL, t->name) != 0;
        if (all && denied) abort();
        if (denied && !t->error_code) abort();
        if (!want_ops && t->topic_authorized_operations != INT32_MIN) abort();
        if (!all && !asked_md(&q, t) && !sl_str_eqc(t->name, "local-a") &&
            !sl_str_eqc(t->name, "local-b"))
            abort();
    }
    sl_wr w;
    sl_wr_init(&w, a, 256);
    sl_metadata_resp_encode(&w, v, &m);
    if (w.err) return;
    sl_metadata_resp back;
    sl_rd br = sl_rd_init(w.buf, w.len);
    if (sl_metadata_resp_decode(&br, a, v, &back) != SL_OK || back.topics_count != m.topics_count)
        abort();
}

static void groups(sl_arena *a, int16_t v, uint8_t flags, const uint8_t *p, size_t n) {
    sl_describe_groups_resp m;
    sl_describe_groups_resp_init(&m);
    sl_rd r = sl_rd_init(p, n);
    sl_gw_authz az = {NULL, deny_odd, ops_len};
    if (sl_describe_groups_resp_decode(&r, a, v % 6, &m) == SL_OK) {
        int32_t ng = m.groups_count > 0 ? m.groups_count : 0;
        sl_describe_groups_req q = {.include_authorized_operations = flags & 2};
        q.groups = sl_arena_calloc(a, (size_t)ng + 1, sizeof *q.groups);
        if (!q.groups) return;
        for (int32_t i = 0; i < ng; i++)
            q.groups[q.groups_count++] =
                m.groups[i].group_id.len >= 0 ? m.groups[i].group_id : sl_str_c("");
        q.groups[q.groups_count++] = sl_str_c("absent");
        if (!sl_gw_describe_groups_merge(a, &q, q.include_authorized_operations, &az, &m)) return;
        if (m.groups_count != q.groups_count) abort();
        for (int32_t i = 0; i < m.groups_count; i++) {
            if (!sl_str_eq(m.groups[i].group_id, q.groups[i])) abort();
            if (deny_odd(NULL, q.groups[i]) && m.groups[i].error_code != 29) abort();
        }
        sl_wr w;
        sl_wr_init(&w, a, 256);
        sl_describe_groups_resp_encode(&w, v % 6, &m);
    }
    sl_list_groups_resp l;
    sl_list_groups_resp_init(&l);
    r = sl_rd_init(p, n);
    if (sl_list_groups_resp_decode(&r, a, v % 6, &l) != SL_OK) return;
    sl_gw_list_groups_filter(&l, &az);
    for (int32_t i = 0; i < l.groups_count; i++)
        if (deny_odd(NULL, l.groups[i].group_id)) abort();
}

/* Answers for the ids asked only, in request order; a denied id is answered with its denial
 * and nothing the upstream said; no allowed entry lists a denied topic. */
static void transactions(sl_arena *a, int16_t v, const uint8_t *p, size_t n) {
    sl_gw_authz az = {NULL, deny_odd, NULL};
    sl_describe_transactions_resp m;
    sl_describe_transactions_resp_init(&m);
    sl_rd r = sl_rd_init(p, n);
    if (sl_describe_transactions_resp_decode(&r, a, 0, &m) == SL_OK) {
        int32_t ns = m.transaction_states_count > 0 ? m.transaction_states_count : 0;
        sl_describe_transactions_req q = {0};
        q.transactional_ids = sl_arena_calloc(a, (size_t)ns + 1, sizeof *q.transactional_ids);
        if (!q.transactional_ids) return;
        for (int32_t i = 0; i < ns; i += 1 + (i & 1)) {
            sl_str id = m.transaction_states[i].transactional_id;
            q.transactional_ids[q.transactional_ids_count++] = id.len >= 0 ? id : sl_str_c("");
        }
        q.transactional_ids[q.transactional_ids_count++] = sl_str_c("absent");
        if (!sl_gw_describe_transactions_merge(a, &q, &az, &az, &m)) return;
        if (m.transaction_states_count != q.transactional_ids_count) abort();
        for (int32_t i = 0; i < m.transaction_states_count; i++) {
            const sl_describe_transactions_resp_state *st = &m.transaction_states[i];
            if (!sl_str_eq(st->transactional_id, q.transactional_ids[i])) abort();
            bool denied = deny_odd(NULL, q.transactional_ids[i]) != 0;
            if (denied && (st->error_code != 29 || st->topics_count != 0)) abort();
            for (int32_t t = 0; t < st->topics_count; t++)
                if (deny_odd(NULL, st->topics[t].topic)) abort();
        }
        sl_wr w;
        sl_wr_init(&w, a, 256);
        sl_describe_transactions_resp_encode(&w, 0, &m);
        sl_describe_transactions_resp back;
        sl_rd br = sl_rd_init(w.buf, w.len);
        if (!w.err && (sl_describe_transactions_resp_decode(&br, a, 0, &back) != SL_OK ||
                       back.transaction_states_count != m.transaction_states_count))
            abort();
    }
    sl_list_transactions_resp l;
    sl_list_transactions_resp_init(&l);
    r = sl_rd_init(p, n);
    if (sl_list_transactions_resp_decode(&r, a, v % 2, &l) != SL_OK) return;
    sl_gw_list_transactions_filter(&l, &az);
    for (int32_t i = 0; i < l.transaction_states_count; i++)
        if (deny_odd(NULL, l.transaction_states[i].transactional_id)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3 || size > 1 << 20) return 0;
    sl_arena *a = sl_arena_new(1 << 16);
    if (!a) return 0;
    int16_t v = (int16_t)(data[1] % 13);
    if (data[0] % 4 == 2)
        transactions(a, v, data + 3, size - 3);
    else if (data[0] & 1)
        groups(a, v, data[2], data + 3, size - 3);
    else
        metadata(a, v, data[2], data + 3, size - 3);
    sl_arena_free(a);
    return 0;
}
