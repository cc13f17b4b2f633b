/* DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554) over the credential
 * store. The client sends salt and SaltedPassword; the broker derives StoredKey and ServerKey
 * and never sees a password. With an authorizer, Kafka's rule: DESCRIBE/ALTER on the cluster;
 * without one, on SASL listeners only principals listed in super.users may call these. */
#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "auth/sl_auth.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

bool sl_broker_is_super_user(const sl_broker *b, const char *principal) {
    if (!principal) return false;
    size_t pl = strlen(principal);
    for (const char *p = b->cfg.super_users; *p;) {
        while (*p == ';' || *p == ' ') p++;
        size_t n = strcspn(p, ";");
        size_t t = n;
        while (t && p[t - 1] == ' ') t--;
        if (t && t == pl && !memcmp(p, principal, t)) return true;
        p += n;
    }
    return false;
}

/* Kafka: DESCRIBE (describe) or ALTER (alter) on the cluster. Without an authorizer the
 * interim rule stays: on SASL listeners only super.users may manage credentials (a broker that
 * authenticates but does not authorize must not let any user reset every password). */
static bool allowed(sl_req *rq, int op) {
    if (rq->b->authz) return sl_req_allowed_cluster(rq, op);
    sl_security_protocol p = sl_broker_listener_protocol(rq->b, sl_conn_listener(rq->conn));
    if (p != SL_SEC_SASL_PLAINTEXT && p != SL_SEC_SASL_SSL) return true;
    return sl_broker_is_super_user(rq->b, rq->principal);
}

static sl_str arena_str(sl_arena *a, const char *s) {
    size_t n = strlen(s);
    char *p = sl_arena_alloc(a, n + 1);
    if (!p) return SL_STR_NULL;
    memcpy(p, s, n + 1);
    return (sl_str){p, (int32_t)n};
}

void sl_h_describe_user_scram_credentials(sl_req *rq) {
    sl_describe_user_scram_credentials_req req =
        *(const sl_describe_user_scram_credentials_req *)rq->req;
    sl_describe_user_scram_credentials_resp resp;
    sl_describe_user_scram_credentials_resp_init(&resp);
    resp.results_count = 0;
    if (!allowed(rq, SL_ACL_OP_DESCRIBE)) {
        resp.error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        resp.error_message = sl_str_c("Cluster authorization failed.");
        SL_RESPOND(rq, describe_user_scram_credentials, &resp);
        return;
    }
    sl_credstore *st = sl_auth_store(rq->b->auth, false);
    if (st) sl_credstore_refresh(st);
    int nstore = st ? sl_credstore_count(st) : 0;
    bool all = req.users_count <= 0;
    int cap = all ? nstore : req.users_count;
    sl_describe_user_scram_credentials_resp_result *res =
        cap ? sl_arena_calloc(rq->a, (size_t)cap, sizeof *res) : NULL;
    sl_describe_user_scram_credentials_resp_credential_info *info =
        nstore ? sl_arena_calloc(rq->a, (size_t)nstore * (size_t)(cap ? cap : 1), sizeof *info)
               : NULL;
    if ((cap && !res) || (nstore && !info)) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    int nres = 0, ninfo = 0;
    for (int i = 0; i < cap; i++) {
        const char *name = NULL;
        sl_str want = SL_STR_NULL;
        if (all) {
            name = sl_credstore_at(st, i, NULL);
            /* The store has one entry per (user, mechanism): one result per user. */
            bool seen = false;
            for (int r = 0; r < nres; r++) seen |= sl_str_eqc(res[r].user, name);
            if (seen) continue;
            want = sl_str_c(name);
        } else {
            want = req.users[i].name;
        }
        sl_describe_user_scram_credentials_resp_result *r = &res[nres++];
        r->user = all ? arena_str(rq->a, name) : want;
        r->error_message = SL_STR_NULL;
        r->credential_infos = info ? info + ninfo : NULL; /* no users: no array */
        r->credential_infos_count = 0;
        bool dup = false;
        for (int j = 0; !all && j < req.users_count; j++)
            dup |= j != i && sl_str_eq(req.users[j].name, want);
        if (dup) {
            r->error_code = SL_KAFKA_DUPLICATE_RESOURCE;
            r->error_message = sl_str_c("Cannot describe SCRAM credentials for the same user "
                                        "twice in a single request");
            continue;
        }
        for (int k = 0; k < nstore; k++) {
            const sl_scram_cred *c;
            const char *u = sl_credstore_at(st, k, &c);
            if (want.len >= 0 && sl_str_eqc(want, u)) {
                info[ninfo].mechanism = (int8_t)c->mech;
                info[ninfo].iterations = c->iterations;
                ninfo++;
                r->credential_infos_count++;
            }
        }
        if (!r->credential_infos_count) {
            r->error_code = SL_KAFKA_RESOURCE_NOT_FOUND;
            r->error_message =
                sl_str_c("Attempt to describe a user credential that does not exist");
        }
    }
    resp.results = res;
    resp.results_count = nres;
    SL_RESPOND(rq, describe_user_scram_credentials, &resp);
}

typedef struct op {
    sl_str name;
    int8_t mech;
    const sl_alter_user_scram_credentials_req_upsertion *up; /* NULL: deletion */
} op;

void sl_h_alter_user_scram_credentials(sl_req *rq) {
    sl_alter_user_scram_credentials_req req = *(const sl_alter_user_scram_credentials_req *)rq->req;
    int nd = req.deletions_count > 0 ? req.deletions_count : 0;
    int nu = req.upsertions_count > 0 ? req.upsertions_count : 0;
    int nops = nd + nu;
    op *ops = nops ? sl_arena_calloc(rq->a, (size_t)nops, sizeof *ops) : NULL;
    int16_t *err = nops ? sl_arena_calloc(rq->a, (size_t)nops, sizeof *err) : NULL;
    const char **msg = nops ? sl_arena_calloc(rq->a, (size_t)nops, sizeof *msg) : NULL;
    sl_alter_user_scram_credentials_resp_result *res =
        nops ? sl_arena_calloc(rq->a, (size_t)nops, sizeof *res) : NULL;
    if (nops && (!ops || !err || !msg || !res)) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    for (int i = 0; i < nd; i++)
        ops[i] = (op){req.deletions[i].name, req.deletions[i].mechanism, NULL};
    for (int i = 0; i < nu; i++)
        ops[nd + i] = (op){req.upsertions[i].name, req.upsertions[i].mechanism, &req.upsertions[i]};

    bool ok_caller = allowed(rq, SL_ACL_OP_ALTER);
    sl_credstore *st = ok_caller ? sl_auth_store(rq->b->auth, true) : NULL;
    bool locked = st && sl_credstore_lock(st) == SL_OK;
    /* Validate every operation first; a user's operations apply only if all of them are valid. */
    for (int i = 0; i < nops; i++) {
        op *o = &ops[i];
        size_t hl = sl_scram_hash_len(o->mech);
        if (!ok_caller) {
            err[i] = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
            msg[i] = "Cluster authorization failed.";
        } else if (!locked) {
            err[i] = SL_KAFKA_KAFKA_STORAGE_ERROR;
            msg[i] = "The credential store is unavailable";
        } else if (o->name.len <= 0 || o->name.len > SL_SCRAM_MAX_USER) {
            err[i] = SL_KAFKA_UNACCEPTABLE_CREDENTIAL;
            msg[i] = "Username must not be empty or longer than 255 bytes";
        } else if (!hl) {
            err[i] = SL_KAFKA_UNSUPPORTED_SASL_MECHANISM;
            msg[i] = "Unknown SCRAM mechanism";
        } else if (o->up && (o->up->iterations < SL_SCRAM_MIN_ITER ||
                             o->up->iterations > SL_SCRAM_MAX_ITER)) {
            err[i] = SL_KAFKA_UNACCEPTABLE_CREDENTIAL;
            msg[i] = "Iterations must be between 4096 and 16384";
        } else if (o->up && (o->up->salt.len <= 0 || o->up->salt.len > SL_SCRAM_MAX_SALT ||
                             o->up->salted_password.len != (int32_t)hl)) {
            err[i] = SL_KAFKA_UNACCEPTABLE_CREDENTIAL;
            msg[i] = "Salt must be 1-64 bytes and the salted password one digest long";
        } else if (!o->up && !sl_credstore_find(st, o->name.p, (size_t)o->name.len, o->mech)) {
            err[i] = SL_KAFKA_RESOURCE_NOT_FOUND;
            msg[i] = "Attempt to delete a user credential that does not exist";
        }
        for (int j = 0; j < nops; j++)
            if (j != i && ops[j].mech == o->mech && sl_str_eq(ops[j].name, o->name)) {
                err[i] = SL_KAFKA_DUPLICATE_RESOURCE;
                msg[i] = "A user credential cannot be altered twice in the same request";
            }
    }
    /* One result per user: the first error among its operations, if any. */
    int nres = 0;
    for (int i = 0; i < nops; i++) {
        int r = 0;
        while (r < nres && !sl_str_eq(res[r].user, ops[i].name)) r++;
        if (r == nres) {
            res[nres].user = ops[i].name;
            res[nres].error_message = SL_STR_NULL;
            nres++;
        }
        if (err[i] && !res[r].error_code) {
            res[r].error_code = err[i];
            res[r].error_message = sl_str_c(msg[i]);
        }
    }
    bool changed = false;
    for (int i = 0; locked && i < nops; i++) {
        int r = 0;
        while (!sl_str_eq(res[r].user, ops[i].name)) r++;
        if (res[r].error_code) continue;
        op *o = &ops[i];
        sl_err e;
        if (o->up) {
            sl_scram_cred c;
            e = sl_scram_cred_from_salted(o->mech, o->up->salted_password.p, o->up->salt.p,
                                          (size_t)o->up->salt.len, o->up->iterations, &c);
            if (!e) e = sl_credstore_put(st, o->name.p, (size_t)o->name.len, &c);
        } else {
            e = sl_credstore_remove(st, o->name.p, (size_t)o->name.len, o->mech);
        }
        if (e) {
            res[r].error_code = SL_KAFKA_UNACCEPTABLE_CREDENTIAL;
            res[r].error_message = sl_str_c("Invalid credential");
        } else {
            changed = true;
        }
    }
    if (changed) {
        sl_err e = sl_credstore_save(st);
        if (e) {
            SL_ERROR("auth", "cannot save the credential store", "err=%s", sl_errname(e));
            for (int r = 0; r < nres; r++)
                if (!res[r].error_code) {
                    res[r].error_code = SL_KAFKA_KAFKA_STORAGE_ERROR;
                    res[r].error_message = sl_str_c("The credential store could not be written");
                }
        } else {
            for (int r = 0; r < nres; r++)
                if (!res[r].error_code)
                    SL_INFO("auth", "SCRAM credentials altered", "user=%.*s by=%s",
                            (int)res[r].user.len, res[r].user.p,
                            rq->principal ? rq->principal : "-");
        }
    }
    if (locked) sl_credstore_unlock(st);
    sl_alter_user_scram_credentials_resp resp;
    sl_alter_user_scram_credentials_resp_init(&resp);
    resp.results = res;
    resp.results_count = nres;
    SL_RESPOND(rq, alter_user_scram_credentials, &resp);
}
