/* OCSF 1.x formatting of the trail's events (docs/audit.md has the catalogue). Events are built
 * only from the hub's fields: names, addresses, counts, outcomes. Never a record payload, key,
 * header, password or token: none of them reaches sl_event. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "acl/sl_acl.h"
#include "audit/sl_audit_int.h"
#include "base/sl_kerr.h"
#include "base/sl_logging.h"
#include "pipeline/sl_authorize.h"
#include "proto/gen/sl_msgs.h"

/* ---- JSON strings ---- */

void sl_json_str(sl_text *b, const char *s, size_t n) {
    if (!s) {
        sl_text_put(b, "null", 4);
        return;
    }
    sl_text_put(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        /* Copy plain runs in one step. */
        while (run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\') run++;
        if (run > i) {
            sl_text_put(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned c = u[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sl_text_put(b, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named)
                sl_text_put(b, named, 2);
            else
                sl_text_printf(b, "\\u%04x", c);
            i++;
        } else {
            size_t l = sl_utf8_len(u + i, n - i);
            if (l) {
                sl_text_put(b, s + i, l);
                i += l;
            } else {
                sl_text_put(b, "\\ufffd", 6);
                i++;
            }
        }
    }
    sl_text_put(b, "\"", 1);
}

void sl_json_cstrq(sl_text *b, const char *s) { sl_json_str(b, s, s ? strlen(s) : 0); }

static void key(sl_text *b, const char *k) {
    sl_text_put(b, ",\"", 2);
    sl_text_puts(b, k);
    sl_text_put(b, "\":", 2);
}
static void kstr(sl_text *b, const char *k, const char *v) {
    key(b, k);
    sl_json_cstrq(b, v);
}
static void ksstr(sl_text *b, const char *k, sl_str v) {
    key(b, k);
    sl_json_str(b, v.len < 0 ? NULL : v.p, v.len < 0 ? 0 : (size_t)v.len);
}
static void kint(sl_text *b, const char *k, int64_t v) {
    key(b, k);
    sl_text_printf(b, "%lld", (long long)v);
}
static void kbool(sl_text *b, const char *k, bool v) {
    key(b, k);
    sl_text_puts(b, v ? "true" : "false");
}
/* Objects are built into a scratch buffer with the member helpers (each member starts with a
 * comma) and copied in without the first comma. */
static void obj_from(sl_text *b, const char *k, sl_text *tmp) {
    key(b, k);
    sl_text_put(b, "{", 1);
    if (tmp->len) sl_text_put(b, tmp->p + 1, tmp->len - 1);
    sl_text_put(b, "}", 1);
    tmp->len = 0;
    if (tmp->p) tmp->p[0] = 0;
}

static void common(sl_text *b, sl_ocsf_ev *ev, const char *code, int class_uid, int activity,
                   const char *class_name, const char *activity_name, int severity,
                   int64_t time_ms) {
    ev->code = code;
    ev->class_uid = class_uid;
    ev->activity_id = activity;
    ev->severity_id = severity;
    ev->time_ms = time_ms;
    kstr(b, "class_name", class_name);
    kstr(b, "activity_name", activity_name);
}

static void status(sl_text *b, bool ok, const char *detail) {
    kint(b, "status_id", ok ? 1 : 2);
    kstr(b, "status", ok ? "Success" : "Failure");
    if (detail) kstr(b, "status_detail", detail);
}

/* src_endpoint {ip, port} of a peer "ip:port" / "[v6]:port". */
static void src_endpoint(sl_text *b, const char *peer) {
    if (!peer) return;
    char ip[64];
    sl_log_peer_addr(peer, ip, sizeof ip);
    sl_text t = {0};
    kstr(&t, "ip", ip);
    int port = sl_events_peer_port(peer);
    if (port) kint(&t, "port", port);
    obj_from(b, "src_endpoint", &t);
    sl_text_free(&t);
}

static void dst_endpoint(sl_text *b, const char *listener) {
    if (!listener) return;
    sl_text t = {0};
    kstr(&t, "svc_name", listener);
    obj_from(b, "dst_endpoint", &t);
    sl_text_free(&t);
}

/* A principal "User:alice": user {name "alice", uid "User:alice"}. */
static void user(sl_text *b, const char *k, const char *principal) {
    if (!principal) return;
    const char *c = strchr(principal, ':');
    sl_text t = {0};
    kstr(&t, "name", c ? c + 1 : principal);
    kstr(&t, "uid", principal);
    if (c) {
        key(&t, "type");
        sl_json_str(&t, principal, (size_t)(c - principal));
    }
    obj_from(b, k, &t);
    sl_text_free(&t);
}

static void actor(sl_text *b, const char *principal, sl_str client_id) {
    sl_text t = {0};
    if (principal) user(&t, "user", principal);
    if (client_id.len >= 0) ksstr(&t, "app_name", client_id);
    if (t.len) obj_from(b, "actor", &t);
    sl_text_free(&t);
}

static void api(sl_text *b, const char *operation, int version, int32_t correlation) {
    sl_text t = {0};
    kstr(&t, "operation", operation);
    if (version >= 0) {
        key(&t, "version");
        sl_text_printf(&t, "\"%d\"", version);
    }
    sl_text_puts(&t, ",\"service\":{\"name\":\"kafka\"}");
    if (correlation >= 0) {
        key(&t, "request");
        sl_text_printf(&t, "{\"uid\":\"%d\"}", correlation);
    }
    obj_from(b, "api", &t);
    sl_text_free(&t);
}

/* ---- Authentication (3002) ---- */

void sl_ocsf_auth(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev) {
    const sl_ev_auth *a = &e->auth;
    static const char *const names[] = {"Logon", "Reauthenticate", "Session Expired"};
    int act = a->activity == SL_AUTH_LOGON ? 1 : 99;
    common(b, ev, "authenticate", 3002, act, "Authentication", names[a->activity],
           a->success ? 1 : 3, e->time_ms);
    kstr(b, "category_name", "Identity & Access Management");
    status(b, a->success, a->reason);
    if (a->mechanism) {
        kstr(b, "auth_protocol", a->mechanism);
        kint(b, "auth_protocol_id", 99);
    }
    if (a->user) {
        sl_text t = {0};
        kstr(&t, "name", a->user);
        obj_from(b, "user", &t);
        sl_text_free(&t);
    }
    if (e->principal) actor(b, e->principal, SL_STR_NULL);
    src_endpoint(b, e->peer);
    dst_endpoint(b, e->listener);
    kbool(b, "is_cleartext", a->tls_version == NULL);
    if (a->tls_version) {
        sl_text t = {0};
        kstr(&t, "version", a->tls_version);
        if (a->tls_cipher) kstr(&t, "cipher", a->tls_cipher);
        if (a->cert_subject) {
            key(&t, "certificate");
            sl_text_puts(&t, "{\"subject\":");
            sl_json_cstrq(&t, a->cert_subject);
            sl_text_puts(&t, "}");
        }
        obj_from(b, "tls", &t);
        sl_text_free(&t);
    }
    if (a->success) {
        sl_text t = {0};
        if (e->conn_id) {
            key(&t, "uid");
            sl_text_printf(&t, "\"%llu\"", (unsigned long long)e->conn_id);
        }
        kint(&t, "created_time", e->time_ms);
        if (a->session_lifetime_ms > 0)
            kint(&t, "expiration_time", e->time_ms + a->session_lifetime_ms);
        kbool(&t, "is_remote", true);
        obj_from(b, "session", &t);
        sl_text_free(&t);
        kint(x, "session_lifetime_ms", a->session_lifetime_ms);
    }
}

/* ---- Network Activity (4001) ---- */

void sl_ocsf_net(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev) {
    const sl_ev_net *n = &e->net;
    bool refused = n->activity == SL_NET_REFUSED;
    int act = n->activity == SL_NET_OPEN ? 1 : n->activity == SL_NET_CLOSE ? 2 : 5;
    const char *name = act == 1 ? "Open" : act == 2 ? "Close" : "Refuse";
    common(b, ev, refused ? "refusal" : "connection", 4001, act, "Network Activity", name,
           refused ? 3 : 1, e->time_ms);
    kstr(b, "category_name", "Network Activity");
    status(b, !refused, n->reason);
    if (n->count > 1) kint(b, "count", n->count); /* a summary of held-back refusals */
    src_endpoint(b, e->peer);
    dst_endpoint(b, e->listener);
    sl_text t = {0};
    if (e->conn_id) {
        key(&t, "uid");
        sl_text_printf(&t, "\"%llu\"", (unsigned long long)e->conn_id);
    }
    kint(&t, "direction_id", 1);
    kstr(&t, "direction", "Inbound");
    kstr(&t, "protocol_name", "tcp");
    obj_from(b, "connection_info", &t);
    if (e->principal) actor(b, e->principal, SL_STR_NULL);
    if (n->activity == SL_NET_CLOSE) {
        kint(&t, "bytes_in", n->bytes_in);
        kint(&t, "bytes_out", n->bytes_out);
        kint(&t, "bytes", n->bytes_in + n->bytes_out);
        obj_from(b, "traffic", &t);
        kint(b, "duration", n->duration_ms);
    }
    sl_text_free(&t);
    (void)x;
}

/* The gateway's connections to the upstream cluster (SL_EV_UPSTREAM): Network Activity too,
 * outbound, the gateway being the source and the upstream broker the destination. */
void sl_ocsf_upstream(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev) {
    const sl_ev_upstream *u = &e->upstream;
    bool lost = u->op && !strcmp(u->op, "lost");
    int act = lost ? 2 : u->success ? 1 : 99;
    const char *name = lost ? "Close" : u->success ? "Open" : "Other";
    common(b, ev, "upstream", 4001, act, "Network Activity", name, u->success ? 1 : 3, e->time_ms);
    kstr(b, "category_name", "Network Activity");
    status(b, u->success, u->detail ? u->detail : u->success ? NULL : "failed");
    sl_text t = {0};
    if (u->address) kstr(&t, "hostname", u->address);
    kstr(&t, "type", "upstream broker");
    if (u->node >= 0) {
        key(&t, "uid");
        sl_text_printf(&t, "\"%d\"", (int)u->node);
    }
    obj_from(b, "dst_endpoint", &t);
    kint(&t, "direction_id", 2);
    kstr(&t, "direction", "Outbound");
    kstr(&t, "protocol_name", "tcp");
    obj_from(b, "connection_info", &t);
    sl_text_free(&t);
    kstr(x, "upstream_op", u->op ? u->op : "?");
}

/* ---- Application Lifecycle (6002) ---- */

static void app_object(sl_text *b) {
    sl_text_puts(b, ",\"app\":{\"name\":\"Sluice\",\"vendor_name\":\"Sluice\"}");
}

void sl_ocsf_app(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev) {
    const sl_ev_app *a = &e->app;
    int act = 99;
    const char *name = "Other";
    switch (a->activity) {
    case SL_APP_START:
        act = 3;
        name = "Start";
        break;
    case SL_APP_STOP:
        act = 4;
        name = "Stop";
        break;
    case SL_APP_CONFIG:
        name = "Config Loaded";
        break;
    case SL_APP_TRAIL_OPEN:
        name = "Trail Opened";
        break;
    case SL_APP_TRAIL_ROTATE:
        name = "Trail Rotated";
        break;
    }
    common(b, ev, "lifecycle", 6002, act, "Application Lifecycle", name, 1, e->time_ms);
    kstr(b, "category_name", "Application Activity");
    status(b, true, NULL);
    app_object(b);
    if (a->detail) kstr(b, "message", a->detail);
    if (a->digest) kstr(x, "config_sha256", a->digest);
}

void sl_ocsf_trail(sl_text *b, int activity_id, const char *activity_name, const char *code,
                   const char *message, int64_t time_ms, sl_ocsf_ev *ev) {
    common(b, ev, code, 6002, activity_id, "Application Lifecycle", activity_name, 1, time_ms);
    kstr(b, "category_name", "Application Activity");
    status(b, true, NULL);
    app_object(b);
    if (message) kstr(b, "message", message);
}

/* ---- API Activity (6003) ---- */

static const struct {
    int16_t key;
    const char *name;
    int8_t activity; /* OCSF: 1 Create, 2 Read, 3 Update, 4 Delete */
    bool management;
} k_apis[] = {
    {SL_API_PRODUCE, "Produce", 1, false},
    {SL_API_FETCH, "Fetch", 2, false},
    {SL_API_LIST_OFFSETS, "ListOffsets", 2, false},
    {SL_API_METADATA, "Metadata", 2, false},
    {SL_API_OFFSET_COMMIT, "OffsetCommit", 3, false},
    {SL_API_OFFSET_FETCH, "OffsetFetch", 2, false},
    {SL_API_DESCRIBE_GROUPS, "DescribeGroups", 2, false},
    {SL_API_LIST_GROUPS, "ListGroups", 2, false},
    {SL_API_CREATE_TOPICS, "CreateTopics", 1, true},
    {SL_API_DELETE_TOPICS, "DeleteTopics", 4, true},
    {SL_API_DELETE_RECORDS, "DeleteRecords", 4, true},
    {SL_API_DESCRIBE_ACLS, "DescribeAcls", 2, false},
    {SL_API_CREATE_ACLS, "CreateAcls", 1, true},
    {SL_API_DELETE_ACLS, "DeleteAcls", 4, true},
    {SL_API_DESCRIBE_CONFIGS, "DescribeConfigs", 2, false},
    {SL_API_ALTER_CONFIGS, "AlterConfigs", 3, true},
    {SL_API_CREATE_PARTITIONS, "CreatePartitions", 3, true},
    {SL_API_DELETE_GROUPS, "DeleteGroups", 4, true},
    {SL_API_INCREMENTAL_ALTER_CONFIGS, "IncrementalAlterConfigs", 3, true},
    {SL_API_OFFSET_DELETE, "OffsetDelete", 4, true},
    {SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS, "DescribeUserScramCredentials", 2, false},
    {SL_API_ALTER_USER_SCRAM_CREDENTIALS, "AlterUserScramCredentials", 3, true},
    {SL_API_DESCRIBE_CLUSTER, "DescribeCluster", 2, false},
};
enum { NAPIS = sizeof k_apis / sizeof *k_apis };

static int api_at(int16_t key) {
    for (int i = 0; i < NAPIS; i++)
        if (k_apis[i].key == key) return i;
    return -1;
}

const char *sl_audit_api_name(int16_t key, char *buf, size_t n) {
    int i = api_at(key);
    if (i >= 0) return k_apis[i].name;
    snprintf(buf, n, "ApiKey%d", key);
    return buf;
}

bool sl_audit_api_management(int16_t key) {
    int i = api_at(key);
    return i >= 0 && k_apis[i].management;
}

/* Read-only APIs that name resources (the `describe` type, off by default). */
bool sl_audit_api_describe(int16_t key) {
    int i = api_at(key);
    return i >= 0 && !k_apis[i].management && k_apis[i].activity == 2 && key != SL_API_FETCH;
}

static const char *lower_res(int rtype) {
    switch (rtype) {
    case SL_ACL_RES_TOPIC:
        return "topic";
    case SL_ACL_RES_GROUP:
        return "group";
    case SL_ACL_RES_CLUSTER:
        return "cluster";
    case SL_ACL_RES_TRANSACTIONAL_ID:
        return "transactional_id";
    case SL_ACL_RES_DELEGATION_TOKEN:
        return "delegation_token";
    case SL_ACL_RES_USER:
        return "user";
    default:
        return "unknown";
    }
}

/* The resources a listing may name by the thousand (Metadata of every topic) are capped. */
#define MAX_RESOURCES 100

static void resource(sl_text *b, bool first, const sl_req_res *r) {
    if (!first) sl_text_put(b, ",", 1);
    sl_text_puts(b, "{\"type\":");
    sl_json_cstrq(b, lower_res(r->rtype));
    sl_text_puts(b, ",\"name\":");
    sl_json_str(b, r->name.p, (size_t)(r->name.len > 0 ? r->name.len : 0));
    sl_text_puts(b, ",\"data\":{\"operation\":");
    sl_json_cstrq(b, sl_acl_op_name(r->op));
    sl_text_printf(b, ",\"allowed\":%s", r->allowed ? "true" : "false");
    if (r->flags & SL_AZ_ANY) sl_text_puts(b, ",\"any\":true");
    sl_text_printf(b, ",\"error_code\":%d,\"error\":", r->error);
    sl_json_cstrq(b, sl_kafka_err_name(r->error));
    if (!r->allowed && r->decided_by) { /* the binding or rule behind the denial */
        sl_text_puts(b, ",\"decided_by\":");
        sl_json_str(b, r->decided_by, strlen(r->decided_by));
    }
    sl_text_puts(b, "}}");
}

static const char *outcome_name(sl_req_outcome o) {
    switch (o) {
    case SL_REQ_OUT_RESPONSE:
        return "response";
    case SL_REQ_OUT_NOREPLY:
        return "noreply";
    case SL_REQ_OUT_CLOSED:
        return "closed";
    default:
        return "none";
    }
}

bool sl_audit_alt_allowed(const sl_req *rq, int32_t i) {
    for (int32_t j = 0; j < rq->nres; j++)
        if (rq->res[j].alt == i && rq->res[j].allowed) return true;
    return false;
}

void sl_ocsf_request(sl_text *b, sl_text *x, const sl_event *e, sl_audit_type type,
                     sl_ocsf_ev *ev) {
    const sl_req *rq = e->rq;
    int i = api_at(rq->h.api_key);
    char nb[24];
    const char *opname = sl_audit_api_name(rq->h.api_key, nb, sizeof nb);
    int act = i >= 0 ? k_apis[i].activity : 99;
    static const char *const acts[] = {"Unknown", "Create", "Read", "Update", "Delete"};
    int failed = 0, shown = 0;
    int16_t first_err = rq->error;
    for (int32_t r = 0; r < rq->nres; r++) {
        const sl_req_res *res = &rq->res[r];
        if (res->flags & (SL_AZ_OPS | SL_AZ_QUIET)) continue;
        if ((!res->allowed && !sl_audit_alt_allowed(rq, r)) || res->error) {
            failed++;
            if (!first_err) first_err = res->error;
        }
    }
    bool ok = !first_err && rq->outcome != SL_REQ_OUT_CLOSED && !failed;
    common(b, ev, type == SL_AUDIT_DESCRIBE ? "describe" : "management", 6003, act, "API Activity",
           act <= 4 ? acts[act] : "Other", ok ? 1 : 2, e->time_ms);
    kstr(b, "category_name", "Application Activity");
    char detail[160];
    if (rq->outcome == SL_REQ_OUT_CLOSED)
        snprintf(detail, sizeof detail, "connection closed: %s", rq->why ? rq->why : "-");
    else if (failed)
        snprintf(detail, sizeof detail, "%d resource(s) failed", failed);
    else
        detail[0] = 0;
    status(b, ok, detail[0] ? detail : NULL);
    kstr(b, "status_code", sl_kafka_err_name(first_err));
    api(b, opname, rq->h.api_version, rq->h.correlation_id);
    actor(b, rq->principal, rq->h.client_id);
    src_endpoint(b, rq->peer);
    dst_endpoint(b, rq->listener);
    key(b, "resources");
    sl_text_put(b, "[", 1);
    for (int32_t r = 0; r < rq->nres && shown < MAX_RESOURCES; r++) {
        const sl_req_res *res = &rq->res[r];
        if (res->flags & SL_AZ_OPS) continue;
        resource(b, shown == 0, res);
        shown++;
    }
    sl_text_put(b, "]", 1);
    if (rq->end_ns > rq->start_ns) kint(b, "duration", (rq->end_ns - rq->start_ns) / 1000000);
    kstr(x, "outcome", outcome_name(rq->outcome));
    if (rq->nres > shown) kint(x, "resources_named", rq->nres);
}

static int op_activity(int op) {
    switch (op) {
    case SL_ACL_OP_CREATE:
        return 1;
    case SL_ACL_OP_READ:
    case SL_ACL_OP_DESCRIBE:
    case SL_ACL_OP_DESCRIBE_CONFIGS:
    case SL_ACL_OP_DESCRIBE_TOKENS:
        return 2;
    case SL_ACL_OP_WRITE:
    case SL_ACL_OP_ALTER:
    case SL_ACL_OP_ALTER_CONFIGS:
    case SL_ACL_OP_IDEMPOTENT_WRITE:
        return 3;
    case SL_ACL_OP_DELETE:
        return 4;
    default:
        return 99;
    }
}

void sl_ocsf_denial(sl_text *b, sl_text *x, const sl_event *e, int32_t i, sl_ocsf_ev *ev) {
    const sl_req *rq = e->rq;
    const sl_req_res *r = &rq->res[i];
    int act = op_activity(r->op);
    static const char *const acts[] = {"Unknown", "Create", "Read", "Update", "Delete"};
    common(b, ev, "denial", 6003, act, "API Activity", act <= 4 ? acts[act] : "Other", 3,
           e->time_ms);
    kstr(b, "category_name", "Application Activity");
    char detail[96];
    snprintf(detail, sizeof detail, "authorization denied: %s on %s", sl_acl_op_name(r->op),
             sl_acl_res_name(r->rtype));
    status(b, false, detail);
    kstr(b, "status_code", sl_kafka_err_name(r->error));
    char nb[24];
    api(b, sl_audit_api_name(rq->h.api_key, nb, sizeof nb), rq->h.api_version,
        rq->h.correlation_id);
    actor(b, rq->principal, rq->h.client_id);
    src_endpoint(b, rq->peer);
    dst_endpoint(b, rq->listener);
    key(b, "resources");
    sl_text_put(b, "[", 1);
    resource(b, true, r);
    sl_text_put(b, "]", 1);
    (void)x;
}

void sl_ocsf_data(sl_text *b, sl_text *x, const sl_audit_data *d, int n, int64_t time_ms,
                  sl_ocsf_ev *ev) {
    int64_t errors = 0, requests = 0, start = d[0].start_ms, end = d[0].end_ms;
    int16_t last_error = 0;
    for (int i = 0; i < n; i++) {
        errors += d[i].errors;
        requests += d[i].requests;
        if (d[i].last_error) last_error = d[i].last_error;
        if (d[i].start_ms < start) start = d[i].start_ms;
        if (d[i].end_ms > end) end = d[i].end_ms;
    }
    bool w = d[0].write;
    common(b, ev, w ? "produce" : "consume", 6003, w ? 1 : 2, "API Activity", w ? "Create" : "Read",
           1, time_ms);
    kstr(b, "category_name", "Application Activity");
    status(b, errors == 0, errors ? "some requests failed" : NULL);
    kstr(b, "status_code", sl_kafka_err_name(last_error));
    api(b, w ? "Produce" : "Fetch", -1, -1);
    actor(b, d[0].principal, d[0].client_id ? sl_str_c(d[0].client_id) : (sl_str){NULL, -1});
    src_endpoint(b, d[0].peer);
    dst_endpoint(b, d[0].listener);
    kint(b, "start_time", start);
    kint(b, "end_time", end);
    kint(b, "count", requests);
    key(b, "resources");
    sl_text_put(b, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i) sl_text_put(b, ",", 1);
        sl_text_puts(b, "{\"type\":\"topic\",\"name\":");
        sl_json_cstrq(b, d[i].topic);
        sl_text_printf(b,
                       ",\"data\":{\"partition\":%d,\"records\":%lld,\"bytes\":%lld,"
                       "\"first_offset\":%lld,\"last_offset\":%lld,\"requests\":%lld,"
                       "\"errors\":%lld}}",
                       d[i].partition, (long long)d[i].records, (long long)d[i].bytes,
                       (long long)d[i].first_offset, (long long)d[i].last_offset,
                       (long long)d[i].requests, (long long)d[i].errors);
    }
    sl_text_put(b, "]", 1);
    (void)x;
}

/* ---- management that is not a request (certificate reload) ---- */

void sl_ocsf_admin(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev) {
    const sl_ev_admin *a = &e->admin;
    common(b, ev, "management", 6003, 3, "API Activity", "Update", a->success ? 1 : 3, e->time_ms);
    kstr(b, "category_name", "Application Activity");
    status(b, a->success, a->detail);
    api(b, a->action ? a->action : "admin", -1, -1);
    if (e->principal) actor(b, e->principal, SL_STR_NULL);
    key(b, "resources");
    sl_text_puts(b, "[{\"type\":\"broker\",\"name\":");
    sl_json_cstrq(b, a->resource ? a->resource : "");
    sl_text_puts(b, "}]");
    (void)x;
}

/* ---- key use (SL_EV_KEY): a KMS call, a key lifecycle step, or data failing authentication.
 * API Activity with the provider as the service: an auditor sees every call Sluice made to the
 * KMS with its key, topic id, reason and outcome, and can match it with the KMS's own log. ---- */

static int key_activity(const char *op) {
    static const struct {
        const char *op;
        int act;
    } k[] = {{"generate", 1},  {"wrap", 1},     {"rotate", 1}, {"tk_rotate", 1},
             {"unwrap", 2},    {"describe", 2}, {"tamper", 2}, {"rewrap", 3},
             {"reencrypt", 3}, {"destroy", 4},  {"retire", 4}, {"shred", 4}};
    for (size_t i = 0; op && i < sizeof k / sizeof *k; i++)
        if (!strcmp(op, k[i].op)) return k[i].act;
    return 99;
}

void sl_ocsf_key(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev) {
    const sl_ev_key *k = &e->key;
    static const char *const acts[] = {"Unknown", "Create", "Read", "Update", "Delete"};
    int act = key_activity(k->op);
    bool tamper = k->op && !strcmp(k->op, "tamper");
    /* Data failing authentication is an integrity finding (High); a failed KMS call is Medium. */
    int sev = tamper ? 4 : k->success ? 1 : 3;
    common(b, ev, "management", 6003, act, "API Activity", act <= 4 ? acts[act] : "Other", sev,
           e->time_ms);
    kstr(b, "category_name", "Application Activity");
    status(b, k->success, k->success ? NULL : (k->detail ? k->detail : "failed"));
    if (k->reason) kstr(b, "message", k->reason);
    sl_text t = {0};
    char opn[48];
    snprintf(opn, sizeof opn, "kms:%s", k->op ? k->op : "?");
    kstr(&t, "operation", opn);
    sl_text_puts(&t, ",\"service\":{\"name\":");
    sl_json_cstrq(&t, k->provider ? k->provider : "unknown");
    sl_text_puts(&t, "}");
    obj_from(b, "api", &t);
    sl_text_free(&t);
    if (e->principal) actor(b, e->principal, SL_STR_NULL);
    key(b, "resources");
    sl_text_put(b, "[", 1);
    bool first = true;
    if (k->key_id) {
        sl_text_puts(b, "{\"type\":\"kms_key\",\"name\":");
        sl_json_cstrq(b, k->key_id);
        sl_text_printf(b, ",\"data\":{\"version\":%u}}", k->key_version);
        first = false;
    }
    if (k->topic) {
        if (!first) sl_text_put(b, ",", 1);
        sl_text_puts(b, "{\"type\":\"topic\",\"name\":");
        sl_json_cstrq(b, k->topic);
        if (k->partition >= 0) sl_text_printf(b, ",\"data\":{\"partition\":%d}", k->partition);
        sl_text_puts(b, "}");
    }
    sl_text_put(b, "]", 1);
    kint(b, "duration", k->latency_ms);
    kstr(x, "key_op", k->op);
    if (k->reason) kstr(x, "reason", k->reason);
}

/* ---- field protection (SL_EV_PROTECT): a reveal of encrypted fields to a consumer, a refused
 * produce, a grant change, a forgotten subject, a policy load. API Activity with the operation
 * "protect:<op>": an auditor sees who was shown which field of which topic in which view, and
 * how many values, never a value. ---- */

static int protect_activity(const char *op) {
    static const struct {
        const char *op;
        int act;
    } k[] = {{"grant", 1},  {"reject", 1}, {"reveal", 2},
             {"policy", 3}, {"revoke", 4}, {"forget", 4}};
    for (size_t i = 0; op && i < sizeof k / sizeof *k; i++)
        if (!strcmp(op, k[i].op)) return k[i].act;
    return 99;
}

void sl_ocsf_protect(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev) {
    const sl_ev_protect *p = &e->protect;
    static const char *const acts[] = {"Unknown", "Create", "Read", "Update", "Delete"};
    int act = protect_activity(p->op);
    /* Values that no longer decrypt, or a policy that did not load: Medium; refusals Low. */
    int sev = !p->success ? (p->op && !strcmp(p->op, "reject") ? 2 : 3) : p->failed > 0 ? 3 : 1;
    common(b, ev, "management", 6003, act, "API Activity", act <= 4 ? acts[act] : "Other", sev,
           e->time_ms);
    kstr(b, "category_name", "Application Activity");
    status(b, p->success, p->success ? NULL : (p->detail ? p->detail : "failed"));
    sl_text t = {0};
    char opn[48];
    snprintf(opn, sizeof opn, "protect:%s", p->op ? p->op : "?");
    kstr(&t, "operation", opn);
    sl_text_puts(&t, ",\"service\":{\"name\":\"field-protection\"}");
    obj_from(b, "api", &t);
    sl_text_free(&t);
    if (e->principal) actor(b, e->principal, SL_STR_NULL);
    src_endpoint(b, e->peer);
    dst_endpoint(b, e->listener);
    key(b, "resources");
    sl_text_put(b, "[", 1);
    bool first = true;
    if (p->topic) {
        sl_text_puts(b, "{\"type\":\"topic\",\"name\":");
        sl_json_cstrq(b, p->topic);
        if (p->partition >= 0) sl_text_printf(b, ",\"data\":{\"partition\":%d}", p->partition);
        sl_text_puts(b, "}");
        first = false;
    }
    if (p->field) {
        if (!first) sl_text_put(b, ",", 1);
        sl_text_puts(b, "{\"type\":\"field\",\"name\":");
        sl_json_cstrq(b, p->field);
        if (p->view) {
            sl_text_puts(b, ",\"data\":{\"view\":");
            sl_json_cstrq(b, p->view);
            sl_text_puts(b, "}");
        }
        sl_text_puts(b, "}");
        first = false;
    }
    if (p->target) {
        /* grant/revoke: the principal granted; forget: the subject's token; policy: the file */
        const char *type = !p->op                     ? "target"
                           : !strcmp(p->op, "forget") ? "subject"
                           : !strcmp(p->op, "policy") ? "policy"
                                                      : "principal";
        if (!first) sl_text_put(b, ",", 1);
        sl_text_printf(b, "{\"type\":\"%s\",\"name\":", type);
        sl_json_cstrq(b, p->target);
        sl_text_puts(b, "}");
    }
    sl_text_put(b, "]", 1);
    if (p->count > 0) kint(b, "count", p->count);
    kstr(x, "protect_op", p->op);
    if (p->view) kstr(x, "view", p->view);
    kint(x, "count", p->count);
    kint(x, "failed", p->failed);
}

/* ---- Detection Finding (2004) ---- */

static int observable_type(const char *rule) {
    if (!rule) return 99;
    if (strstr(rule, "address")) return 2;   /* IP Address */
    if (strstr(rule, "principal")) return 4; /* User Name */
    return 99;
}

void sl_ocsf_detection(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev) {
    const sl_ev_detection *d = &e->det;
    int sev = d->severity >= 1 && d->severity <= 6 ? d->severity : 3;
    common(b, ev, "detection", 2004, 1, "Detection Finding", "Create", sev, e->time_ms);
    kstr(b, "category_name", "Findings");
    kint(b, "status_id", 1);
    kstr(b, "status", "New");
    if (d->title) kstr(b, "message", d->title);
    sl_text t = {0};
    key(&t, "uid");
    sl_text_printf(&t, "\"%s-%lld\"", d->rule ? d->rule : "rule", (long long)e->time_ms);
    kstr(&t, "title", d->title ? d->title : (d->rule ? d->rule : ""));
    key(&t, "types");
    sl_text_put(&t, "[", 1);
    sl_json_cstrq(&t, d->rule ? d->rule : "");
    sl_text_put(&t, "]", 1);
    key(&t, "analytic");
    sl_text_puts(&t, "{\"name\":");
    sl_json_cstrq(&t, d->rule ? d->rule : "");
    sl_text_puts(&t, ",\"type_id\":1,\"type\":\"Rule\"}");
    obj_from(b, "finding_info", &t);
    sl_text_free(&t);
    key(b, "evidences");
    sl_text_puts(b, "[{\"data\":{\"subject\":");
    sl_json_cstrq(b, d->subject);
    sl_text_printf(b, ",\"value\":%.17g,\"threshold\":%.17g,\"window_ms\":%lld", d->value,
                   d->threshold, (long long)d->window_ms);
    if (d->block_ms) sl_text_printf(b, ",\"block_ms\":%lld", (long long)d->block_ms);
    sl_text_puts(b, "}}]");
    if (d->subject) {
        key(b, "observables");
        sl_text_printf(
            b, "[{\"name\":\"subject\",\"type_id\":%d,\"value\":", observable_type(d->rule));
        sl_json_cstrq(b, d->subject);
        sl_text_puts(b, "}]");
    }
    src_endpoint(b, e->peer);
    (void)x;
}

/* ---- the whole line ---- */

bool sl_ocsf_line(sl_text *out, const sl_ocsf_src *src, uint64_t seq, const sl_ocsf_ev *ev,
                  const sl_text *body, const sl_text *extra, const char *prev_hex) {
    int cat = ev->class_uid / 1000; /* OCSF class uids are category * 1000 + n */
    out->len = 0;
    sl_text_puts(out, "{\"metadata\":{\"version\":\"" SL_OCSF_VERSION
                      "\",\"product\":{\"name\":\"Sluice\",\"vendor_name\":\"Sluice\"},"
                      "\"log_name\":\"sluice-audit\",\"event_code\":");
    sl_json_cstrq(out, ev->code);
    sl_text_printf(out, ",\"sequence\":%llu,\"uid\":", (unsigned long long)seq);
    char uid[160];
    snprintf(uid, sizeof uid, "%s-%d-%llu", src->cluster_id ? src->cluster_id : "",
             (int)src->node_id, (unsigned long long)seq);
    sl_json_cstrq(out, uid);
    sl_text_printf(out,
                   "},\"time\":%lld,\"category_uid\":%d,\"class_uid\":%d,\"activity_id\":%d,"
                   "\"type_uid\":%d,\"severity_id\":%d",
                   (long long)ev->time_ms, cat, ev->class_uid, ev->activity_id,
                   ev->class_uid * 100 + ev->activity_id, ev->severity_id);
    if (body && body->len) sl_text_put(out, body->p, body->len);
    sl_text_puts(out, ",\"device\":{\"type_id\":1,\"type\":\"Server\",\"hostname\":");
    char node[24];
    snprintf(node, sizeof node, "node-%d", (int)src->node_id);
    sl_json_cstrq(out, node);
    sl_text_puts(out, "},\"unmapped\":{\"cluster_id\":");
    sl_json_cstrq(out, src->cluster_id ? src->cluster_id : "");
    sl_text_printf(out, ",\"node_id\":%d", (int)src->node_id);
    if (extra && extra->len) sl_text_put(out, extra->p, extra->len);
    sl_text_puts(out, ",\"prev_hash\":\"");
    sl_text_put(out, prev_hex, 64);
    sl_text_puts(out, "\"}}");
    return !out->oom;
}

void sl_audit_sha256_hex(const void *p, size_t n, char out[65]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(p, n, md);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hx[md[i] >> 4];
        out[2 * i + 1] = hx[md[i] & 15];
    }
    out[64] = 0;
}
