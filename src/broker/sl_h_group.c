/* The classic group APIs: decodes them, asks the group-coordination seam (pipeline/sl_backend.h:
 * the local coordinator is src/broker/sl_groups_local.c) and encodes its answers. JoinGroup and
 * SyncGroup are answered from the seam's completions, which may come later and for another
 * connection's request; OffsetCommit, DeleteGroups, OffsetDelete and LeaveGroup once the seam
 * says the change is durable. Authorization decisions come from the pipeline's stage
 * (sl_req_allowed), with Kafka's answers for each denial.
 *
 * Ownership: a request waiting for a completion keeps its arena (and the response built there)
 * until it is answered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acl/sl_acl.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

static const sl_groups *GR(sl_req *rq) { return &rq->b->coordinator; }

/* ---- FindCoordinator ---- */

static const sl_listener_spec *endpoint_for(sl_req *rq) {
    sl_conn *c = sl_pending_conn(rq->p);
    const char *ln = c ? sl_conn_listener(c) : NULL;
    for (int i = 0; ln && i < rq->b->nadv; i++)
        if (!strcmp(rq->b->adv[i].name, ln)) return &rq->b->adv[i];
    return &rq->b->adv[0];
}

static void coordinator_for(sl_req *rq, int8_t key_type, int16_t *err, sl_str *msg, int32_t *node,
                            sl_str *host, int32_t *port) {
    const sl_listener_spec *ep = endpoint_for(rq);
    *err = SL_KAFKA_NONE;
    *msg = SL_STR_NULL;
    *node = rq->b->cfg.node_id;
    *host = sl_str_c(ep->host);
    *port = ep->port;
    /* Type 1 is the transaction coordinator (sl_h_txn.c): this broker too, once it is open. A
     * gateway's broker has neither coordinator. */
    bool known = key_type == 0 || key_type == 1;
    bool open = key_type == 0 ? rq->b->groups != NULL : key_type == 1 && rq->b->txn != NULL;
    if (!open) {
        *err = known ? SL_KAFKA_COORDINATOR_NOT_AVAILABLE : SL_KAFKA_INVALID_REQUEST;
        *msg = sl_str_c(!known          ? "unknown key type"
                        : key_type == 1 ? "the transaction coordinator is not available"
                                        : "the group coordinator is not available");
        *node = -1;
        *host = sl_str_c("");
        *port = -1;
    }
}

/* Kafka: DESCRIBE on the group (or transactional id) whose coordinator is asked for. */
static void coordinator_authz(sl_req *rq, int8_t key_type, sl_str key, int16_t *err, sl_str *msg,
                              int32_t *node, sl_str *host, int32_t *port) {
    if (key_type != 0 && key_type != 1) return;
    bool group = key_type == 0;
    if (sl_req_allowed(rq, SL_ACL_OP_DESCRIBE,
                       group ? SL_ACL_RES_GROUP : SL_ACL_RES_TRANSACTIONAL_ID, key))
        return;
    *err = group ? SL_KAFKA_GROUP_AUTHORIZATION_FAILED
                 : SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    *msg = SL_STR_NULL;
    *node = -1;
    *host = sl_str_c("");
    *port = -1;
}

static bool group_ok(sl_req *rq, int op, sl_str group) {
    return sl_req_allowed(rq, op, SL_ACL_RES_GROUP, group);
}

void sl_h_find_coordinator(sl_req *rq) {
    sl_find_coordinator_req req = *(const sl_find_coordinator_req *)rq->req;
    sl_find_coordinator_resp resp;
    sl_find_coordinator_resp_init(&resp);
    if (rq->h.api_version < 4) {
        coordinator_for(rq, req.key_type, &resp.error_code, &resp.error_message, &resp.node_id,
                        &resp.host, &resp.port);
        coordinator_authz(rq, req.key_type, req.key, &resp.error_code, &resp.error_message,
                          &resp.node_id, &resp.host, &resp.port);
    } else {
        int32_t n = req.coordinator_keys_count > 0 ? req.coordinator_keys_count : 0;
        if (!SL_RESP_ARRAY(rq, resp.coordinators, resp.coordinators_count, n))
            return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < n; i++) {
            sl_find_coordinator_resp_coordinator *c = &resp.coordinators[i];
            c->key = req.coordinator_keys[i];
            coordinator_for(rq, req.key_type, &c->error_code, &c->error_message, &c->node_id,
                            &c->host, &c->port);
            coordinator_authz(rq, req.key_type, c->key, &c->error_code, &c->error_message,
                              &c->node_id, &c->host, &c->port);
        }
    }
    SL_RESPOND(rq, find_coordinator, &resp);
}

/* ---- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ---- */

/* Kafka reports the client's address as "/ip". */
static sl_str client_host(sl_req *rq) {
    sl_conn *c = sl_pending_conn(rq->p);
    const char *peer = c ? sl_conn_peer(c) : "";
    const char *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
    char *h = sl_arena_alloc(rq->a, n + 2);
    if (!h) return sl_str_c("");
    h[0] = '/';
    memcpy(h + 1, peer, n);
    h[n + 1] = 0;
    return (sl_str){h, (int32_t)n + 1};
}
static void join_answered(void *ctx, const sl_group_join_result *r) {
    sl_req *rq = ctx;
    sl_join_group_resp resp;
    sl_join_group_resp_init(&resp);
    resp.error_code = r->error;
    resp.generation_id = r->generation;
    resp.protocol_type = r->protocol_type;
    resp.protocol_name = r->protocol_name;
    resp.leader = r->leader;
    resp.member_id = r->member_id;
    resp.skip_assignment = r->skip_assignment;
    resp.members_count = 0;
    if (r->nmembers > 0) {
        resp.members = sl_arena_calloc(rq->a, (size_t)r->nmembers, sizeof *resp.members);
        if (!resp.members) return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < r->nmembers; i++) {
            resp.members[i].member_id = r->members[i].member_id;
            resp.members[i].group_instance_id = r->members[i].instance_id;
            resp.members[i].metadata = r->members[i].metadata;
        }
        resp.members_count = r->nmembers;
    }
    SL_RESPOND(rq, join_group, &resp); /* encodes now: the views above need not outlive this */
}

void sl_h_join_group(sl_req *rq) {
    sl_join_group_req req = *(const sl_join_group_req *)rq->req;
    int16_t v = rq->h.api_version;
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {
        sl_join_group_resp resp;
        sl_join_group_resp_init(&resp);
        resp.error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        resp.protocol_name = v >= 7 ? SL_STR_NULL : sl_str_c("");
        resp.leader = sl_str_c("");
        resp.member_id = sl_str_c("");
        SL_RESPOND(rq, join_group, &resp);
        return;
    }
    int32_t n = req.protocols_count > 0 ? req.protocols_count : 0;
    sl_group_protocol *ps = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *ps);
    if (!ps) return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        ps[i].name = req.protocols[i].name;
        ps[i].metadata = req.protocols[i].metadata;
    }
    sl_group_join_args jr = {
        .group_id = req.group_id,
        .member_id = req.member_id,
        .instance_id = v >= 5 ? req.group_instance_id : SL_STR_NULL,
        .client_id = rq->h.client_id.len >= 0 ? rq->h.client_id : sl_str_c(""),
        .client_host = client_host(rq),
        .protocol_type = req.protocol_type,
        .reason = req.reason,
        .session_timeout_ms = req.session_timeout_ms,
        .rebalance_timeout_ms = v >= 1 ? req.rebalance_timeout_ms : -1,
        .protocols = ps,
        .nprotocols = n,
        .require_known_member_id = v >= 4,
        .supports_skip_assignment = v >= 9,
    };
    if (sl_groups_join(GR(rq), &jr, rq->a, join_answered, rq))
        return sl_req_fail(rq, "out of memory");
}

static void sync_answered(void *ctx, const sl_group_sync_result *r) {
    sl_req *rq = ctx;
    sl_sync_group_resp resp;
    sl_sync_group_resp_init(&resp);
    resp.error_code = r->error;
    resp.protocol_type = r->protocol_type;
    resp.protocol_name = r->protocol_name;
    resp.assignment = r->assignment;
    SL_RESPOND(rq, sync_group, &resp);
}

void sl_h_sync_group(sl_req *rq) {
    sl_sync_group_req req = *(const sl_sync_group_req *)rq->req;
    int16_t v = rq->h.api_version;
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {
        sl_sync_group_resp resp;
        sl_sync_group_resp_init(&resp);
        resp.error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        resp.assignment = (sl_bytes){(const uint8_t *)"", 0};
        SL_RESPOND(rq, sync_group, &resp);
        return;
    }
    int32_t n = req.assignments_count > 0 ? req.assignments_count : 0;
    sl_group_assignment *as = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *as);
    if (!as) return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        as[i].member_id = req.assignments[i].member_id;
        as[i].assignment = req.assignments[i].assignment;
    }
    sl_group_sync_args sa = {
        .group_id = req.group_id,
        .member_id = req.member_id,
        .instance_id = v >= 3 ? req.group_instance_id : SL_STR_NULL,
        .generation = req.generation_id,
        .protocol_type = v >= 5 ? req.protocol_type : SL_STR_NULL,
        .protocol_name = v >= 5 ? req.protocol_name : SL_STR_NULL,
        .assignments = as,
        .nassignments = n,
    };
    if (sl_groups_sync(GR(rq), &sa, rq->a, sync_answered, rq))
        return sl_req_fail(rq, "out of memory");
}

void sl_h_heartbeat(sl_req *rq) {
    sl_heartbeat_req req = *(const sl_heartbeat_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_heartbeat_resp resp;
    sl_heartbeat_resp_init(&resp);
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {
        resp.error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        SL_RESPOND(rq, heartbeat, &resp);
        return;
    }
    resp.error_code = sl_groups_heartbeat(GR(rq), req.group_id, req.generation_id, req.member_id,
                                          v >= 3 ? req.group_instance_id : SL_STR_NULL);
    SL_RESPOND(rq, heartbeat, &resp);
}

/* A LeaveGroup waiting for the seam: the answer and the leavers it reports on. */
typedef struct leave_ctx {
    sl_req *rq;
    sl_leave_group_resp *rp;
    sl_group_leaver *m;
} leave_ctx;

static void left(void *ctx, int16_t err) {
    leave_ctx *c = ctx; /* the members are gone either way: `err` changes no answer */
    if (c->rq->h.api_version < 3) {
        c->rp->error_code = c->m[0].error;
    } else {
        for (int32_t i = 0; i < c->rp->members_count; i++)
            c->rp->members[i].error_code = c->m[i].error;
    }
    SL_RESPOND(c->rq, leave_group, c->rp);
}

void sl_h_leave_group(sl_req *rq) {
    sl_leave_group_req req = *(const sl_leave_group_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_leave_group_resp *rp = sl_arena_calloc(rq->a, 1, sizeof *rp);
    leave_ctx *c = sl_arena_calloc(rq->a, 1, sizeof *c);
    if (!rp || !c) return sl_req_fail(rq, "out of memory");
    sl_leave_group_resp_init(rp);
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {
        rp->error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        SL_RESPOND(rq, leave_group, rp);
        return;
    }
    int32_t n = 1;
    if (v >= 3) {
        rp->error_code = sl_groups_check_group(GR(rq), req.group_id);
        n = req.members_count > 0 ? req.members_count : 0;
        rp->members = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *rp->members);
        if (!rp->members) return sl_req_fail(rq, "out of memory");
        rp->members_count = rp->error_code ? 0 : n;
        if (rp->error_code) {
            SL_RESPOND(rq, leave_group, rp);
            return;
        }
    }
    sl_group_leaver *m = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *m);
    if (!m) return sl_req_fail(rq, "out of memory");
    if (v < 3) {
        m[0] = (sl_group_leaver){req.member_id, SL_STR_NULL, 0};
    } else {
        for (int32_t i = 0; i < n; i++) {
            m[i] = (sl_group_leaver){req.members[i].member_id, req.members[i].group_instance_id, 0};
            rp->members[i].member_id = m[i].member_id;
            rp->members[i].group_instance_id = m[i].instance_id;
        }
    }
    *c = (leave_ctx){rq, rp, m};
    if (sl_groups_leave(GR(rq), req.group_id, m, n, rq->a, left, c))
        return sl_req_fail(rq, "out of memory");
}

/* ---- offsets ---- */

/* An OffsetCommit waiting for durability: the answer and the partitions it reports on, in
 * request order. */
typedef struct commit_ctx {
    sl_req *rq;
    sl_offset_commit_resp *resp;
    sl_group_offset *o;
} commit_ctx;

static void committed(void *ctx, int16_t err) {
    commit_ctx *c = ctx;
    int32_t k = 0;
    for (int32_t i = 0; i < c->resp->topics_count; i++)
        for (int32_t j = 0; j < c->resp->topics[i].partitions_count; j++, k++) {
            int16_t e = c->o[k].error;
            c->resp->topics[i].partitions[j].error_code = e ? e : err;
        }
    SL_RESPOND(c->rq, offset_commit, c->resp);
}

void sl_h_offset_commit(sl_req *rq) {
    sl_offset_commit_req req = *(const sl_offset_commit_req *)rq->req;
    int16_t v = rq->h.api_version;
    int16_t gerr = sl_groups_commit_check(
        GR(rq), req.group_id, v >= 1 ? req.generation_id_or_member_epoch : -1,
        v >= 1 ? req.member_id : sl_str_c(""), v >= 7 ? req.group_instance_id : SL_STR_NULL);
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) gerr = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    sl_offset_commit_resp *resp = sl_arena_calloc(rq->a, 1, sizeof *resp);
    commit_ctx *c = sl_arena_calloc(rq->a, 1, sizeof *c);
    if (!resp || !c) return sl_req_fail(rq, "out of memory");
    sl_offset_commit_resp_init(resp);
    if (!SL_RESP_MIRROR(rq, req.topics, req.topics_count, partitions_count, resp->topics,
                        resp->topics_count, partitions, partitions_count))
        return sl_req_fail(rq, "out of memory");
    int32_t nt = resp->topics_count, total = 0;
    for (int32_t i = 0; i < nt; i++) total += resp->topics[i].partitions_count;
    sl_group_offset *o = sl_arena_calloc(rq->a, (size_t)(total ? total : 1), sizeof *o);
    if (!o) return sl_req_fail(rq, "out of memory");
    int32_t k = 0;
    for (int32_t i = 0; i < nt; i++) {
        sl_offset_commit_req_topic *t = &req.topics[i];
        sl_offset_commit_resp_topic *ot = &resp->topics[i];
        int32_t np = ot->partitions_count;
        ot->name = t->name;
        bool topic_ok = gerr || sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, t->name);
        for (int32_t j = 0; j < np; j++, k++) {
            sl_offset_commit_req_partition *p = &t->partitions[j];
            ot->partitions[j].partition_index = p->partition_index;
            o[k] = (sl_group_offset){
                .topic = t->name,
                .partition = p->partition_index,
                .offset = p->committed_offset,
                .leader_epoch = v >= 6 ? p->committed_leader_epoch : -1,
                .metadata = p->committed_metadata,
                .error = gerr        ? gerr
                         : !topic_ok ? SL_KAFKA_TOPIC_AUTHORIZATION_FAILED
                                     : 0,
            };
        }
    }
    *c = (commit_ctx){rq, resp, o};
    if (sl_groups_commit(GR(rq), req.group_id, o, total, rq->a, committed, c))
        return sl_req_fail(rq, "out of memory");
}

static void fill_fetch_partition(sl_req *rq, sl_str group, sl_str topic, int32_t part,
                                 int64_t *offset, int32_t *epoch, sl_str *meta) {
    sl_group_committed c;
    sl_groups_committed(GR(rq), group, topic, part, &c);
    *offset = c.offset;
    *epoch = c.leader_epoch;
    *meta = c.metadata.len < 0 ? sl_str_c("") : c.metadata;
}

/* Every committed partition of a group, grouped by topic (OffsetFetch without topics). */
typedef struct fetch_all_ctx {
    sl_req *rq;
    sl_offset_fetch_resp_group *out;
    int32_t n; /* committed partitions: the first pass counts them */
    bool counting, oom;
} fetch_all_ctx;

static void fetch_all_one(void *arg, sl_str topic, int32_t part, const sl_group_committed *o) {
    fetch_all_ctx *c = arg;
    sl_req *rq = c->rq;
    if (c->counting) {
        c->n++;
        return;
    }
    if (c->oom) return;
    /* Kafka leaves out the topics the caller may not DESCRIBE. */
    if (!sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, topic)) return;
    sl_offset_fetch_resp_group *out = c->out;
    sl_offset_fetch_resp_group_topic *t = NULL;
    for (int32_t k = 0; k < out->topics_count && !t; k++)
        if (sl_str_eq(out->topics[k].name, topic)) t = &out->topics[k];
    if (!t) {
        t = &out->topics[out->topics_count++];
        /* copy: the view changes with the next commit, the response is encoded later */
        char *nm = sl_arena_dup(rq->a, topic.p, (size_t)topic.len + 1);
        t->partitions = sl_arena_calloc(rq->a, (size_t)c->n, sizeof *t->partitions);
        if (!nm || !t->partitions) {
            c->oom = true;
            return;
        }
        t->name = (sl_str){nm, topic.len};
    }
    sl_offset_fetch_resp_group_partition *p = &t->partitions[t->partitions_count++];
    p->partition_index = part;
    p->committed_offset = o->offset;
    p->committed_leader_epoch = o->leader_epoch;
    p->metadata = o->metadata.len < 0 ? sl_str_c("") : o->metadata;
}

/* One group's answer in the v8+ shape (the v0-7 shape is copied from it). `topics` NULL: all. */
static bool fetch_group(sl_req *rq, sl_str group, const sl_offset_fetch_req_group_topic *topics,
                        int32_t ntopics, sl_offset_fetch_resp_group *out) {
    out->group_id = group;
    out->error_code = sl_groups_check_group(GR(rq), group);
    out->topics_count = 0;
    if (!out->error_code && !group_ok(rq, SL_ACL_OP_DESCRIBE, group))
        out->error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    if (out->error_code) return true;
    if (topics) {
        out->topics = sl_arena_calloc(rq->a, (size_t)(ntopics ? ntopics : 1), sizeof *out->topics);
        if (!out->topics) return false;
        out->topics_count = ntopics;
        for (int32_t i = 0; i < ntopics; i++) {
            sl_offset_fetch_resp_group_topic *t = &out->topics[i];
            int32_t np =
                topics[i].partition_indexes_count > 0 ? topics[i].partition_indexes_count : 0;
            t->name = topics[i].name;
            t->partitions = sl_arena_calloc(rq->a, (size_t)(np ? np : 1), sizeof *t->partitions);
            if (!t->partitions) return false;
            t->partitions_count = np;
            bool topic_ok = sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, t->name);
            for (int32_t j = 0; j < np; j++) {
                sl_offset_fetch_resp_group_partition *p = &t->partitions[j];
                sl_offset_fetch_resp_group_partition_init(p);
                p->partition_index = topics[i].partition_indexes[j];
                if (!topic_ok) {
                    /* Kafka's "no committed offset"; the schema default is 0. */
                    p->committed_offset = -1;
                    p->metadata = sl_str_c("");
                    p->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
                    continue;
                }
                fill_fetch_partition(rq, group, t->name, p->partition_index, &p->committed_offset,
                                     &p->committed_leader_epoch, &p->metadata);
            }
        }
        return true;
    }
    fetch_all_ctx c = {rq, out, 0, true, false};
    sl_groups_each_committed(GR(rq), group, fetch_all_one, &c);
    out->topics = sl_arena_calloc(rq->a, (size_t)(c.n ? c.n : 1), sizeof *out->topics);
    if (!out->topics) return false;
    c.counting = false;
    sl_groups_each_committed(GR(rq), group, fetch_all_one, &c);
    return !c.oom;
}
/* require_stable (v7+, KIP-447; librdkafka sets it for read_committed consumers): an offset a
 * transaction has sent but not yet committed is unstable; the client retries until the
 * transaction ends, rather than resuming from the offset before it (duplicates in an
 * exactly-once pipeline). */
static void mark_unstable(sl_req *rq, sl_offset_fetch_resp_group *g) {
    for (int32_t i = 0; i < g->topics_count; i++)
        for (int32_t j = 0; j < g->topics[i].partitions_count; j++) {
            sl_offset_fetch_resp_group_partition *p = &g->topics[i].partitions[j];
            if (p->error_code || !sl_txn_coord_offset_pending(rq->b, g->group_id, g->topics[i].name,
                                                              p->partition_index))
                continue;
            p->committed_offset = -1;
            p->error_code = SL_KAFKA_UNSTABLE_OFFSET_COMMIT;
        }
}

void sl_h_offset_fetch(sl_req *rq) {
    sl_offset_fetch_req req = *(const sl_offset_fetch_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_offset_fetch_resp resp;
    sl_offset_fetch_resp_init(&resp);
    if (v >= 8) {
        int32_t ng = req.groups_count > 0 ? req.groups_count : 0;
        if (!SL_RESP_ARRAY(rq, resp.groups, resp.groups_count, ng))
            return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < ng; i++) {
            sl_offset_fetch_req_group *g = &req.groups[i];
            if (!fetch_group(rq, g->group_id, g->topics_count >= 0 ? g->topics : NULL,
                             g->topics_count, &resp.groups[i]))
                return sl_req_fail(rq, "out of memory");
            if (req.require_stable) mark_unstable(rq, &resp.groups[i]);
        }
        SL_RESPOND(rq, offset_fetch, &resp);
        return;
    }
    /* v0-7: the same answer for one group, in the older shape. The request's topic struct has
     * the same layout as the v8 one. */
    int32_t nt = req.topics_count;
    sl_offset_fetch_req_group_topic *ts = NULL;
    if (nt >= 0) {
        ts = sl_arena_calloc(rq->a, (size_t)(nt ? nt : 1), sizeof *ts);
        if (!ts) return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < nt; i++) {
            ts[i].name = req.topics[i].name;
            ts[i].partition_indexes = req.topics[i].partition_indexes;
            ts[i].partition_indexes_count = req.topics[i].partition_indexes_count;
        }
    }
    sl_offset_fetch_resp_group g;
    sl_offset_fetch_resp_group_init(&g);
    if (!fetch_group(rq, req.group_id, ts, nt > 0 ? nt : 0, &g))
        return sl_req_fail(rq, "out of memory");
    if (v >= 7 && req.require_stable) mark_unstable(rq, &g);
    resp.error_code = g.error_code;
    resp.topics =
        sl_arena_calloc(rq->a, (size_t)(g.topics_count ? g.topics_count : 1), sizeof *resp.topics);
    if (!resp.topics) return sl_req_fail(rq, "out of memory");
    resp.topics_count = g.topics_count;
    for (int32_t i = 0; i < g.topics_count; i++) {
        sl_offset_fetch_resp_topic *t = &resp.topics[i];
        t->name = g.topics[i].name;
        int32_t np = g.topics[i].partitions_count;
        if (!SL_RESP_ARRAY(rq, t->partitions, t->partitions_count, np))
            return sl_req_fail(rq, "out of memory");
        for (int32_t j = 0; j < np; j++) {
            sl_offset_fetch_resp_group_partition *s = &g.topics[i].partitions[j];
            sl_offset_fetch_resp_partition *d = &t->partitions[j];
            d->partition_index = s->partition_index;
            d->committed_offset = s->committed_offset;
            d->committed_leader_epoch = s->committed_leader_epoch;
            d->metadata = s->metadata;
            /* v0-1 have no top-level error: the group's goes on every partition */
            d->error_code = v < 2 ? g.error_code : s->error_code;
        }
    }
    SL_RESPOND(rq, offset_fetch, &resp);
}

/* ---- ListGroups / DescribeGroups / DeleteGroups / OffsetDelete ---- */

typedef struct list_ctx {
    sl_req *rq;
    bool all; /* DESCRIBE on the cluster: every group, else the describable ones */
    const sl_list_groups_req *req;
    sl_list_groups_resp *resp;
    int32_t cap;
    bool oom;
} list_ctx;

static bool state_named(sl_str name, const char *state) {
    return name.len >= 0 && strlen(state) == (size_t)name.len &&
           !strncasecmp(state, name.p, (size_t)name.len);
}

static void list_one(void *ctx, const sl_group_summary *g) {
    list_ctx *c = ctx;
    if (!c->all && !sl_req_allowed(c->rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, g->group_id))
        return;
    if (c->rq->h.api_version >= 4 && c->req->states_filter_count > 0) {
        bool ok = false;
        for (int32_t i = 0; i < c->req->states_filter_count && !ok; i++)
            ok = state_named(c->req->states_filter[i], g->state);
        if (!ok) return;
    }
    if (c->resp->groups_count == c->cap) {
        int32_t nc = c->cap ? c->cap * 2 : 16;
        sl_list_groups_resp_group *ng = sl_arena_calloc(c->rq->a, (size_t)nc, sizeof *ng);
        if (!ng) {
            c->oom = true;
            return;
        }
        if (c->resp->groups_count)
            memcpy(ng, c->resp->groups, (size_t)c->resp->groups_count * sizeof *ng);
        c->resp->groups = ng;
        c->cap = nc;
    }
    sl_list_groups_resp_group *o = &c->resp->groups[c->resp->groups_count++];
    /* The views die with the callback; the response is encoded after the walk. */
    char *id = sl_arena_dup(c->rq->a, g->group_id.p, (size_t)g->group_id.len + 1);
    char *pt = sl_arena_dup(c->rq->a, g->protocol_type.p, (size_t)g->protocol_type.len + 1);
    if (!id || !pt) {
        c->oom = true;
        return;
    }
    o->group_id = (sl_str){id, g->group_id.len};
    o->protocol_type = (sl_str){pt, g->protocol_type.len};
    o->group_state = sl_str_c(g->state);
    o->group_type = sl_str_c("classic");
}

void sl_h_list_groups(sl_req *rq) {
    sl_list_groups_req req = *(const sl_list_groups_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_list_groups_resp resp;
    sl_list_groups_resp_init(&resp);
    resp.groups_count = 0;
    bool classic = true;
    if (v >= 5 && req.types_filter_count > 0) {
        classic = false;
        for (int32_t i = 0; i < req.types_filter_count; i++)
            if (req.types_filter[i].len == 7 && !strncasecmp(req.types_filter[i].p, "classic", 7))
                classic = true;
    }
    bool all =
        sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME));
    list_ctx c = {rq, all, &req, &resp, 0, false};
    if (classic) sl_groups_list(GR(rq), list_one, &c);
    if (c.oom) return sl_req_fail(rq, "out of memory");
    SL_RESPOND(rq, list_groups, &resp);
}

typedef struct describe_ctx {
    sl_req *rq;
    sl_describe_groups_resp_group *out;
    bool oom;
} describe_ctx;

static sl_str adup(sl_arena *a, sl_str s, bool *oom) {
    if (s.len < 0) return s;
    char *p = sl_arena_dup(a, s.len ? s.p : "", (size_t)s.len + 1);
    if (!p) *oom = true;
    return p ? (sl_str){p, s.len} : sl_str_c("");
}

static void describe_one(void *ctx, const sl_group_description *g) {
    describe_ctx *c = ctx;
    sl_arena *a = c->rq->a;
    sl_describe_groups_resp_group *o = c->out;
    o->group_state = sl_str_c(g->state);
    o->protocol_type = adup(a, g->protocol_type, &c->oom);
    o->protocol_data = adup(a, g->protocol_name, &c->oom);
    if (g->nmembers < 0) {
        c->oom = true; /* the backend could not list them */
        return;
    }
    o->members = sl_arena_calloc(a, (size_t)(g->nmembers ? g->nmembers : 1), sizeof *o->members);
    if (!o->members) {
        c->oom = true;
        return;
    }
    o->members_count = g->nmembers;
    for (int32_t i = 0; i < g->nmembers; i++) {
        const sl_group_member *m = &g->members[i];
        sl_describe_groups_resp_member *d = &o->members[i];
        d->member_id = adup(a, m->member_id, &c->oom);
        d->group_instance_id = adup(a, m->instance_id, &c->oom);
        d->client_id = adup(a, m->client_id, &c->oom);
        d->client_host = adup(a, m->client_host, &c->oom);
        uint8_t *md = sl_arena_dup(a, m->metadata.len ? m->metadata.p : (const uint8_t *)"",
                                   (size_t)m->metadata.len + 1);
        uint8_t *as = sl_arena_dup(a, m->assignment.len ? m->assignment.p : (const uint8_t *)"",
                                   (size_t)m->assignment.len + 1);
        if (!md || !as) c->oom = true;
        d->member_metadata = (sl_bytes){md, md ? m->metadata.len : 0};
        d->member_assignment = (sl_bytes){as, as ? m->assignment.len : 0};
    }
}

void sl_h_describe_groups(sl_req *rq) {
    sl_describe_groups_req req = *(const sl_describe_groups_req *)rq->req;
    sl_describe_groups_resp resp;
    sl_describe_groups_resp_init(&resp);
    int32_t n = req.groups_count > 0 ? req.groups_count : 0;
    if (!SL_RESP_ARRAY(rq, resp.groups, resp.groups_count, n))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        sl_describe_groups_resp_group *o = &resp.groups[i];
        sl_describe_groups_resp_group_init(o);
        o->group_id = req.groups[i];
        o->group_state = sl_str_c("Dead");
        o->protocol_type = sl_str_c("");
        o->protocol_data = sl_str_c("");
        o->authorized_operations = req.include_authorized_operations
                                       ? sl_req_ops(rq, SL_ACL_RES_GROUP, req.groups[i])
                                       : INT32_MIN;
        o->error_code = sl_groups_check_group(GR(rq), req.groups[i]);
        if (!o->error_code && !group_ok(rq, SL_ACL_OP_DESCRIBE, req.groups[i]))
            o->error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        if (o->error_code) continue;
        describe_ctx c = {rq, o, false};
        sl_groups_describe(GR(rq), req.groups[i], describe_one, &c);
        if (c.oom) return sl_req_fail(rq, "out of memory");
    }
    SL_RESPOND(rq, describe_groups, &resp);
}

/* A DeleteGroups waiting for durability. */
typedef struct delete_ctx {
    sl_req *rq;
    sl_delete_groups_resp *resp;
    int16_t *errors;
} delete_ctx;

static void groups_deleted(void *ctx, int16_t err) {
    delete_ctx *c = ctx;
    for (int32_t i = 0; i < c->resp->results_count; i++)
        c->resp->results[i].error_code = c->errors[i] ? c->errors[i] : err;
    SL_RESPOND(c->rq, delete_groups, c->resp);
}

void sl_h_delete_groups(sl_req *rq) {
    sl_delete_groups_req req = *(const sl_delete_groups_req *)rq->req;
    sl_delete_groups_resp *resp = sl_arena_calloc(rq->a, 1, sizeof *resp);
    delete_ctx *c = sl_arena_calloc(rq->a, 1, sizeof *c);
    if (!resp || !c) return sl_req_fail(rq, "out of memory");
    sl_delete_groups_resp_init(resp);
    int32_t n = req.groups_names_count > 0 ? req.groups_names_count : 0;
    int16_t *errors = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *errors);
    if (!errors || !SL_RESP_ARRAY(rq, resp->results, resp->results_count, n))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        resp->results[i].group_id = req.groups_names[i];
        if (!group_ok(rq, SL_ACL_OP_DELETE, req.groups_names[i]))
            errors[i] = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    }
    *c = (delete_ctx){rq, resp, errors};
    if (sl_groups_delete(GR(rq), req.groups_names, errors, n, rq->a, groups_deleted, c))
        return sl_req_fail(rq, "out of memory");
}

/* An OffsetDelete waiting for durability: the answer and its partitions in request order. */
typedef struct offset_delete_ctx {
    sl_req *rq;
    sl_offset_delete_resp *resp;
    sl_group_offset *o;
} offset_delete_ctx;

static void offsets_deleted(void *ctx, int16_t err) {
    offset_delete_ctx *c = ctx;
    int32_t k = 0;
    for (int32_t i = 0; i < c->resp->topics_count; i++)
        for (int32_t j = 0; j < c->resp->topics[i].partitions_count; j++, k++) {
            int16_t e = c->o[k].error;
            c->resp->topics[i].partitions[j].error_code = e ? e : err;
        }
    SL_RESPOND(c->rq, offset_delete, c->resp);
}

void sl_h_offset_delete(sl_req *rq) {
    sl_offset_delete_req req = *(const sl_offset_delete_req *)rq->req;
    sl_offset_delete_resp *resp = sl_arena_calloc(rq->a, 1, sizeof *resp);
    offset_delete_ctx *c = sl_arena_calloc(rq->a, 1, sizeof *c);
    if (!resp || !c) return sl_req_fail(rq, "out of memory");
    sl_offset_delete_resp_init(resp);
    resp->error_code = group_ok(rq, SL_ACL_OP_DELETE, req.group_id)
                           ? sl_groups_offset_delete_check(GR(rq), req.group_id)
                           : SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    /* A group-level error answers no topics. */
    if (!SL_RESP_MIRROR(rq, req.topics, resp->error_code ? 0 : req.topics_count, partitions_count,
                        resp->topics, resp->topics_count, partitions, partitions_count))
        return sl_req_fail(rq, "out of memory");
    int32_t nt = resp->topics_count, total = 0;
    for (int32_t i = 0; i < nt; i++) total += resp->topics[i].partitions_count;
    sl_group_offset *o = sl_arena_calloc(rq->a, (size_t)(total ? total : 1), sizeof *o);
    if (!o) return sl_req_fail(rq, "out of memory");
    int32_t k = 0;
    for (int32_t i = 0; i < nt; i++) {
        sl_offset_delete_req_topic *t = &req.topics[i];
        sl_offset_delete_resp_topic *ot = &resp->topics[i];
        int32_t np = ot->partitions_count;
        ot->name = t->name;
        bool topic_ok = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, t->name);
        for (int32_t j = 0; j < np; j++, k++) {
            int32_t p = t->partitions[j].partition_index;
            ot->partitions[j].partition_index = p;
            o[k] = (sl_group_offset){
                .topic = t->name,
                .partition = p,
                .error = topic_ok ? 0 : SL_KAFKA_TOPIC_AUTHORIZATION_FAILED,
            };
        }
    }
    *c = (offset_delete_ctx){rq, resp, o};
    if (sl_groups_offset_delete(GR(rq), req.group_id, o, total, rq->a, offsets_deleted, c))
        return sl_req_fail(rq, "out of memory");
}
